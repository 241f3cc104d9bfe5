"""Names that become parts of file names (a data set's name in plot files, a zoo member's name): plain words only,
so that no name read from a config or a file can lead a path elsewhere or carry markup."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError

WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}")   # no path separator, no leading dot, no markup


def plain_word(value: Any, key: str, origin: str | Path | None = None) -> str:
    """`value` if it is a plain word; else a one-line ConfigError naming the key (and the file it came from)."""
    if isinstance(value, str) and WORD.fullmatch(value):
        return value
    where = f"{origin}: " if origin is not None else ""
    raise ConfigError(f"{where}{key}={value!r} is refused: it becomes part of a file name; use a plain word (letters, "
                      "digits, _ . + -, starting with a letter or digit, at most 100 characters)")
