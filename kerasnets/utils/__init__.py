"""kerasnets.utils."""
