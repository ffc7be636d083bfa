"""kerasnets.data."""
