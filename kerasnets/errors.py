"""Errors with a user-facing meaning. The CLI maps them to exit codes."""


class KerasnetsError(Exception):
    """Base class: a problem the user can act on (exit code 1)."""

    exit_code = 1


class UsageError(KerasnetsError):
    """Bad command-line input: unknown recipe or key, bad type or value (exit 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """A config value is of the wrong type, out of range or unknown."""


class NonFiniteLossError(KerasnetsError):
    """Training produced NaN or inf; the last good checkpoint is kept."""

    def __init__(self, step, metrics):
        self.step = step
        self.metrics = dict(metrics)
        bad = ", ".join(f"{k}={v}" for k, v in self.metrics.items())
        super().__init__(
            f"non-finite value at step {step} ({bad}); training stopped, "
            "the last good checkpoint is kept. Lower the learning rate or "
            "check the data."
        )
