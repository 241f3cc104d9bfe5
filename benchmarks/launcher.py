"""Hydra multirun launchers: the same 8 one-epoch jobs of `python -m jobs.train -m`, with Hydra's basic launcher (one
job after another, in the command's own process) and with `hydra/launcher=ray` (one Ray task per job; Ray started on
this machine with every core, one CPU per job). Each command is timed end to end as a user waits for it: imports,
Ray's start and its workers' imports included.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

from benchmarks.sizes import ROOT
from benchmarks.timing import judge, subprocess_env, timed_command

GRID = ("model=softmax,maxout", "regularizer=none,adversarial", "seed=0,1")
JOB = ("logger=none", "trainer.max_epochs=1")
JOBS = math.prod(len(axis.split("=", 1)[1].split(",")) for axis in GRID)
TARGET = 1.0   # the Ray launcher should not be slower than running the jobs one after another


def multirun(sweep_dir: Path, launcher: Sequence[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Run one multirun command; its wall time, exit code and how many jobs wrote metrics.json."""
    command = [sys.executable, "-m", "jobs.train", "-m", *launcher, *GRID, *JOB, f"hydra.sweep.dir={sweep_dir}"]
    entry, _ = timed_command(command, env, timeout)
    return {**entry, "jobs_done": len(list(sweep_dir.glob("*/metrics.json")))}


def bench_launcher(judged: bool = True, timeout: float = 900) -> dict[str, Any]:
    """Wall time of the 8-job multirun with the basic launcher / with the Ray launcher (> 1: Ray is faster)."""
    env = subprocess_env(WANDB_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    # Untimed: read every module once, so that the first command timed does not pay for a cold page cache.
    subprocess.run([sys.executable, "-c", "import pytorch_lightning, ray, pipeline.training.job, jobs.train"], cwd=ROOT,
                   env=env, capture_output=True, timeout=timeout)
    with tempfile.TemporaryDirectory(prefix="bench-launcher-") as tmp:
        basic = multirun(Path(tmp) / "basic", [], env, timeout)
        ray = multirun(Path(tmp) / "ray", ["hydra/launcher=ray"], env, timeout)
    for side in (basic, ray):
        if side["returncode"] != 0 or side["jobs_done"] != JOBS:
            raise RuntimeError(f"a multirun did not finish its {JOBS} jobs: {side}")
    ratio = basic["wall_seconds"] / ray["wall_seconds"]
    return {"id": "launcher", "title": f"Hydra multirun, {JOBS} one-epoch jobs: basic launcher / Ray launcher",
            "command": "python -m jobs.train -m [hydra/launcher=ray] " + " ".join(GRID + JOB),
            "jobs": JOBS, "cores": os.cpu_count(), "basic": basic, "ray": ray, "ratio": ratio,
            "ratio_definition": "basic launcher wall time / Ray launcher wall time (> 1: the Ray launcher is faster)",
            "target": {"op": ">=", "value": TARGET}, "judged": judged,
            "passed": judge(ratio, ">=", TARGET) if judged else None}
