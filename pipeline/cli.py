"""What every command shares: a one-line error and exit code 2 for bad input, and early checks of group options."""
from __future__ import annotations

import functools
import os
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


def one_line(message: str) -> str:
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


def one_line_errors(main: Callable[[], None]) -> Callable[[], None]:
    """Run a command; bad input ends it with `error: <one line>` on stderr and exit code 2.

    Hydra's own handler catches every exception raised inside a `@hydra.main` task, prints it and exits with 1;
    HYDRA_FULL_ERROR=1 lets exceptions reach this wrapper instead (others keep their full traceback, exit 1).
    """

    @functools.wraps(main)
    def wrapped() -> None:
        from hydra.errors import CompactHydraException

        previous = os.environ.get("HYDRA_FULL_ERROR")
        os.environ["HYDRA_FULL_ERROR"] = "1"
        try:
            check_group_choices(sys.argv[1:])
            main()
        except ConfigError as error:
            print(f"error: {one_line(str(error))}", file=sys.stderr)
            sys.exit(2)
        except CompactHydraException as error:   # bad overrides: unknown keys, parse errors, missing configs
            cause = f" ({one_line(str(error.__cause__))})" if error.__cause__ is not None else ""
            print(f"error: {one_line(str(error))}{cause}", file=sys.stderr)
            sys.exit(2)
        finally:
            if previous is None:
                os.environ.pop("HYDRA_FULL_ERROR", None)
            else:
                os.environ["HYDRA_FULL_ERROR"] = previous

    return wrapped
