"""kerasnets.layers."""
