"""Debian packages that tests install for themselves when they are missing (as root, with apt-get), so that CI on a
fresh machine gets them. Standard library only."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

# Root's PATH normally has the sbin dirs, but a test runner's may not.
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
# Serialises apt-get between parallel test workers (dpkg holds its own lock and fails instead of waiting).
_INSTALL_LOCK = Path(tempfile.gettempdir()) / "harness-apt-install.lock"


def which(name: str) -> str | None:
    return shutil.which(name, path=SEARCH_PATH)


def cannot_install(packages: Sequence[str]) -> str | None:
    """None if apt-get can install `packages` here, else a one-line skip reason."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return f"installing {' '.join(packages)} needs root (apt-get)"
    if not Path("/etc/debian_version").exists() or which("apt-get") is None or which("apt-cache") is None:
        return f"{' '.join(packages)} is not installed and this is not a Debian system with apt-get"
    for package in packages:
        policy = subprocess.run(["apt-cache", "policy", package], capture_output=True, text=True).stdout
        candidate = re.search(r"Candidate:\s*(\S+)", policy)
        if candidate is None or candidate.group(1) == "(none)":
            return f"{package} is not installed and apt has no candidate for it"
    return None


def install(packages: Sequence[str], installed: Callable[[], bool], timeout: float = 900) -> None:
    """apt-get install `packages` unless `installed()` already holds; refreshes the package lists once on failure."""
    with open(_INSTALL_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another worker may be installing
        if installed():
            return
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        command = ["apt-get", "install", "-y", "-q", *packages]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            # Stale package lists are the usual cause: refresh once and retry.
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=timeout)
            result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0 or not installed():
            raise RuntimeError(f"installing {' '.join(packages)} failed:\n{result.stdout[-2000:]}\n"
                               f"{result.stderr[-2000:]}")
