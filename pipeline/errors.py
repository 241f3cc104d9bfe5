"""The one exception type for bad input: its message is the single line a user sees."""


class ConfigError(ValueError):
    """A configuration value or input that cannot be used; the message names it and what is accepted."""
