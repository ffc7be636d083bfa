"""kerasnets.export."""
