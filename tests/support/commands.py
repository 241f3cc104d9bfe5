"""Commands run as a user runs them: `python -m <module>` in a fresh folder, with this checkout's code."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[2]


def environment(**env: str | None) -> dict[str, str]:
    """The environment of a command a test starts: this checkout's code first on the path (from any folder), W&B
    disabled unless `env` says otherwise (a variable given as None is removed)."""
    result = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    path = [str(ROOT), *filter(None, result.get("PYTHONPATH", "").split(os.pathsep))]
    result.update({"WANDB_MODE": "disabled", "PYTHONIOENCODING": "utf-8", "PYTHONPATH": os.pathsep.join(path)})
    for name, value in env.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = value
    return result


def run_command(args: Sequence[str], timeout: float = 300, cwd: Path | None = None,
                **env: str | None) -> subprocess.CompletedProcess:
    """`python -m <args>` as a user runs it, in `cwd` (default: a fresh temporary folder, so that what the command
    writes relative to its folder, such as Hydra's outputs/, never lands in the checkout)."""
    with tempfile.TemporaryDirectory(prefix="harness-cwd-") as scratch:
        return subprocess.run([sys.executable, "-m", *args], cwd=cwd or scratch, env=environment(**env),
                              capture_output=True, text=True, encoding="utf-8", timeout=timeout)
