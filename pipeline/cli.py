"""What every command shares: a one-line error and exit code 2 for bad input, and early checks of group options."""
from __future__ import annotations

import functools
import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence, TypeVar

from pipeline.config import CONF_DIR, group_options
from pipeline.errors import ConfigError, JobFailed, one_line
from pipeline.store import ensure_writable

T = TypeVar("T")


def check_group_choices(argv: Sequence[str]) -> None:
    """Refuse `group=option` overrides that name no YAML file, before Hydra prints a multi-line error."""
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, _, value = arg.lstrip("+~").partition("=")
        if not (CONF_DIR / key).is_dir() or "/" in key and key.startswith("hydra"):
            continue
        if value.startswith("[") and value.endswith("]"):   # several options of one group: logger=[wandb,csv]
            value = value[1:-1]
        for option in value.split(","):
            option = option.strip()
            if option and not any(c in option for c in "()[]{}$") and not (CONF_DIR / key / f"{option}.yaml").exists():
                raise ConfigError(f"unknown {key} '{option}'; choose one of: {', '.join(group_options(key))}")


# A quoted name in a Hydra dict ({"a": a.pt}): Hydra's grammar takes unquoted keys only, and says so in its own terms
QUOTED_NAME = re.compile(r"""([{,]\s*)(['"])([^'"]*)\2(\s*:)""")


def check_zoo_models(argv: Sequence[str]) -> None:
    """Refuse quoted zoo names with the command that works, before Hydra's "no viable alternative at input"."""
    for arg in argv:
        key, sep, value = arg.lstrip("+").partition("=")
        if sep and key == "zoo.models" and QUOTED_NAME.search(value):
            fixed = QUOTED_NAME.sub(r"\1\3\4", value)
            raise ConfigError(f"zoo.models={value}: Hydra takes the names without quotes; write "
                              f"'zoo.models={fixed}'")


OUTPUT_KEYS = ("hydra.run.dir", "hydra.sweep.dir", "dir")


def check_output_dirs(argv: Sequence[str]) -> None:
    """Refuse an output folder that cannot be created or written before Hydra or any job starts."""
    for arg in argv:
        key, sep, value = arg.lstrip("+").partition("=")
        if not sep or key not in OUTPUT_KEYS or "$" in value:
            continue
        ensure_writable(Path(value.strip("'\"")), key)


def quote_grid_axes(argv: list[str]) -> list[str]:
    """`sweep.grid.model=a,b` and `sweep.grid.seed=range(3)` are sweep axes, not multirun sweeps: pass them to Hydra
    as quoted strings so that the sweep planner, not Hydra's launcher, expands them; new axes need no `+`."""
    quoted = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key.lstrip("+").startswith("sweep.grid.") and value[:1] not in ("'", '"'):
            quote = "'" if "'" not in value else '"'
            arg = f"++{key.lstrip('+')}={quote}{value}{quote}"
        quoted.append(arg)
    return quoted


def exit_on_config_error(function: Callable[..., T]) -> Callable[..., T]:
    """Bad input ends the command with `error: <one line>` on stderr and exit code 2 (inside Hydra apps too, so
    that Hydra adds no stack trace of its own)."""

    @functools.wraps(function)
    def wrapped(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except ConfigError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)

    return wrapped


def entry_point(app: Callable[[], None]) -> Callable[[], None]:
    """The console entry point of a Hydra app: argv checked and prepared, then the app."""

    @exit_on_config_error
    def main() -> None:
        check_group_choices(sys.argv[1:])
        check_zoo_models(sys.argv[1:])
        check_output_dirs(sys.argv[1:])
        sys.argv[1:] = quote_grid_axes(sys.argv[1:])
        try:
            with hydra_errors_as_config_errors():
                app()
        except JobFailed as error:   # a multirun's job failed (hydra/launcher=ray): the others' results are kept
            print(f"error: {error}", file=sys.stderr)
            sys.exit(1)

    return main


@contextmanager
def hydra_errors_as_config_errors() -> Iterator[None]:
    """Hydra's own errors about the command line (an unknown key such as `regularizer.eps` when the regularizer
    has no eps, a malformed override) as one-line ConfigErrors. Hydra reports them itself, over several lines
    and with exit code 1, unless HYDRA_FULL_ERROR=1 lets them through to here; other exceptions then keep their
    full traceback."""
    from hydra.errors import CompactHydraException

    previous = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield
    except CompactHydraException as error:
        cause = f" ({one_line(error.__cause__)})" if error.__cause__ is not None else ""
        raise ConfigError(f"{one_line(error)}{cause}") from None
    finally:
        if previous is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = previous
