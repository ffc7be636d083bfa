"""kerasnets.losses."""
