"""The exceptions whose message is the single line a user sees (bad input: ConfigError; a failed multirun job),
and the one way an error is cut to one line."""
from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value or input that cannot be used; the message names it and what is accepted."""


class JobFailed(RuntimeError):
    """A job of a Hydra multirun failed although its input was accepted; the message names the job and why.
    Commands end with `error: <message>` and exit code 1 (2 is for bad input)."""


def one_line(error: BaseException | str, limit: int | None = None) -> str:
    """What went wrong, as one line: the message's lines joined and runs of whitespace collapsed, cut to `limit`
    characters; an exception without a message is named by its type."""
    text = " ".join(str(error).split())
    if not text and isinstance(error, BaseException):
        text = type(error).__name__
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def task_error(error: BaseException) -> str:
    """A failed task's error as `Type: message`, one line. Ray raises a task's exception wrapped, its message led by
    the remote traceback; the task's own exception is its `cause`."""
    cause = getattr(error, "cause", None)
    own = cause if isinstance(cause, BaseException) else error
    return f"{type(own).__name__}: {one_line(own, 500)}"
