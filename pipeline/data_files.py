"""A user's data files that a config names (data=folder, data=arrays): where they are, as the driver sees them, and
the sha256 a job id holds instead of their location. No torch here: planning a sweep reads them without it
(pipeline.sources loads them).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Mapping

from pipeline.errors import ConfigError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def absolute(path: str | None) -> str | None:
    """A path as the driver sees it: `~` expanded, relative to the current folder (Ray workers run elsewhere);
    a value still to be given (`???`) is left for the check that asks for it."""
    return path if path in (None, "???") else str(Path(path).expanduser().absolute())


# The sources that read a user's own files, and the config key naming them (a file or a folder).
USER_FILES = {"pipeline.sources.folder": "root", "pipeline.sources.arrays": "path"}


def content_digest(data: Mapping[str, Any]) -> str | None:
    """The sha256 of the files a data=folder or data=arrays config points at (None for named data sets): a job id
    counts the data, not where it lies, so a moved folder reuses results and a changed file retrains."""
    key = USER_FILES.get(str(data.get("source")))
    if key is None:
        return None
    if data.get(key) in (None, "???"):
        kind = "folder" if key == "root" else "file"
        raise ConfigError(f"data.{key} is required here; set it, e.g. data.{key}=<{kind}>")
    place = Path(absolute(str(data[key])))
    if place.is_dir():
        return _digest(tuple(sorted(p for p in place.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)),
                       place)
    if not place.is_file():
        raise ConfigError(f"data.{key}={data[key]}: no such {'folder' if key == 'root' else 'file'}")
    return _digest((place,))


def _digest(files: tuple[Path, ...], base: Path | None = None) -> str:
    """One sha256 over the files' own (store.sha256: each read once per process while unchanged, as a sweep plans
    many jobs on one data set); for a folder its layout (class names) counts too."""
    from pipeline import store

    digest = hashlib.sha256()
    for path in files:
        if base is not None:
            digest.update(str(path.relative_to(base)).encode() + b"\0")
        digest.update(store.sha256(path).encode())
    return digest.hexdigest()
