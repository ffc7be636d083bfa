"""kerasnets.models."""
