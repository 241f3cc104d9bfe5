"""The exceptions whose message is the single line a user sees: bad input (ConfigError), a failed multirun job."""


class ConfigError(ValueError):
    """A configuration value or input that cannot be used; the message names it and what is accepted."""


class JobFailed(RuntimeError):
    """A job of a Hydra multirun failed although its input was accepted; the message names the job and why.
    Commands end with `error: <message>` and exit code 1 (2 is for bad input)."""
