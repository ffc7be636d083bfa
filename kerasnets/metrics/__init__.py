"""kerasnets.metrics."""
