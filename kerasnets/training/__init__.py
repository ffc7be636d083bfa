"""Engine: strategy-agnostic training loop, run directories, distribution helpers."""
