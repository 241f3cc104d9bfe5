"""Hydra multirun launchers: the same 8 one-epoch jobs of `python -m jobs.train -m`, with Hydra's basic launcher (one
job after another, in the command's own process) and with `hydra/launcher=ray` (one Ray task per job; Ray started on
this machine with every core, one CPU per job). Each command is timed end to end as a user waits for it: imports,
Ray's start and its workers' imports included.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from benchmarks.sizes import ROOT
from benchmarks.sweeps import subprocess_env, tail
from benchmarks.timing import judge

GRID = ("model=softmax,maxout", "regularizer=none,adversarial", "seed=0,1")   # 2 × 2 × 2 = 8 jobs
JOB = ("logger=none", "trainer.max_epochs=1")
JOBS = 8
TARGET = 1.0   # the Ray launcher should not be slower than running the jobs one after another


def multirun(sweep_dir: Path, launcher: Sequence[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Run one multirun command; its wall time, exit code and how many jobs wrote metrics.json."""
    command = [sys.executable, "-m", "jobs.train", "-m", *launcher, *GRID, *JOB, f"hydra.sweep.dir={sweep_dir}"]
    started = time.perf_counter()
    try:
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"wall_seconds": None, "returncode": None, "jobs_done": 0, "error": f"timed out after {timeout:.0f} s"}
    entry = {"wall_seconds": time.perf_counter() - started, "returncode": result.returncode,
             "jobs_done": len(list(sweep_dir.glob("*/metrics.json")))}
    if result.returncode != 0:
        entry["error"] = tail(result.stderr)
    return entry


def bench_launcher(judged: bool = True, timeout: float = 900) -> dict[str, Any]:
    """Wall time of the 8-job multirun with the basic launcher / with the Ray launcher (> 1: Ray is faster)."""
    env = subprocess_env(WANDB_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    # Untimed: read every module once, so that the first command timed does not pay for a cold page cache.
    subprocess.run([sys.executable, "-c", "import pytorch_lightning, ray, pipeline.job, jobs.train"], cwd=ROOT,
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
