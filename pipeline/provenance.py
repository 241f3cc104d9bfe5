"""The code that produced a result, recorded beside it: the package version, a fingerprint of the sources that
decide the numbers, and the git commit when the code runs from a checkout.

The fingerprint is kept out of job ids (they hash the config only, so they stay stable across code versions):
a sweep compares it with the running code's to find stale results, names them, and retrains them on request.
"""
from __future__ import annotations

import functools
import hashlib
import subprocess
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent

# What decides a number: a job's (data, model, objective, training loop, attack curve), and each stage's own code.
JOB_SOURCES = ("data.py", "models.py", "regularizers.py", "attacks", "module.py", "resume.py", "job.py", "devices.py")
TRANSFER_SOURCES = ("data.py", "models.py", "attacks", "stages/transfer.py", "devices.py")
EVALUATION_SOURCES = ("data.py", "models.py", "attacks", "diagnostics.py", "contract.py", "stages/evaluate.py",
                      "devices.py")


@functools.cache
def fingerprint(sources: tuple[str, ...] = JOB_SOURCES) -> str:
    """sha256 over the named files (folders: their .py files), by path and content: 12 hex digits."""
    digest = hashlib.sha256()
    for name in sources:
        path = PACKAGE / name
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(str(file.relative_to(PACKAGE)).encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


@functools.cache
def commit() -> str | None:
    """The checkout's commit (with `+dirty` when its files differ from it), or None outside a git checkout."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=PACKAGE, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        head = git("rev-parse", "HEAD")
        return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no", "--", ".") else "")
    except (OSError, subprocess.SubprocessError):
        return None


def code(sources: tuple[str, ...] = JOB_SOURCES) -> dict[str, Any]:
    """What metrics.json records under "code"."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        package = version("harness")
    except PackageNotFoundError:
        package = None
    return {"version": package, "fingerprint": fingerprint(sources), "commit": commit()}


def made_by_this_code(metrics: dict[str, Any]) -> bool:
    """Whether a job's results came from the sources that would produce them now."""
    return (metrics.get("code") or {}).get("fingerprint") == fingerprint()
