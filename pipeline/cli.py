"""What every command shares: a one-line error and exit code 2 for bad input, and early checks of group options."""
from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Callable, Sequence

from pipeline.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def check_group_choices(argv: Sequence[str]) -> None:
    """Refuse `group=option` overrides that name no YAML file, before Hydra prints a multi-line error."""
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, _, value = arg.lstrip("+~").partition("=")
        if not (CONF_DIR / key).is_dir() or "/" in key and key.startswith("hydra"):
            continue
        for option in value.split(","):
            option = option.strip()
            if option and not any(c in option for c in "()[]{}$") and not (CONF_DIR / key / f"{option}.yaml").exists():
                raise ConfigError(f"unknown {key} '{option}'; choose one of: {', '.join(group_options(key))}")


def one_line_errors(main: Callable[[], None]) -> Callable[[], None]:
    """Run a command; bad input ends it with `error: <one line>` on stderr and exit code 2."""

    @functools.wraps(main)
    def wrapped() -> None:
        try:
            check_group_choices(sys.argv[1:])
            main()
        except ConfigError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)

    return wrapped
