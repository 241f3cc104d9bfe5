"""Planning at scale: the marginal cost per job of planning the main grid (3 models × 2 regularizers × S seeds) at
two sizes, the same jobs composed one by one by Hydra (what planning did before), and a large plan: its time, the
memory its jobs hold, and plan.json's size and write time. Each plan runs in a fresh subprocess (no warm caches).
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
from typing import Any

from benchmarks.sizes import ROOT, Sizes
from benchmarks.sweeps import subprocess_env, tail
from benchmarks.timing import judge

TARGET_MS = 3.0   # marginal planning cost per job

# Runs in the child: plan the main experiment with `seeds` seeds, measure, print one JSON line.
CHILD = r"""
import json, sys, time, tracemalloc
from pathlib import Path
from hydra import compose
from omegaconf import OmegaConf
from pipeline.config import compose_job, hydra_context
from pipeline.stages.composer import Composer
from pipeline.stages.plan import conditional_overrides, grid_overrides, plan
from pipeline.stages.sweep_dir import write_plan

seeds, mode, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
with hydra_context():
    cfg = compose("sweep", overrides=[f"+sweep.grid.seed='range({seeds})'"])
    result = {"seeds": seeds, "mode": mode}
    if mode == "one_by_one":   # the reference: Hydra composes every job
        started = time.perf_counter()
        points = grid_overrides(OmegaConf.to_container(cfg.sweep.grid, resolve=True))
        when = OmegaConf.to_container(cfg.sweep.when)
        for point in points:
            OmegaConf.to_container(compose_job(list(cfg.sweep.overrides) + conditional_overrides(point, when) + point),
                                   resolve=True)
        result.update(jobs=len(points), seconds=time.perf_counter() - started)
    else:
        if mode == "memory":
            tracemalloc.start()
        composer = Composer()
        started = time.perf_counter()
        jobs = plan(cfg.sweep, group="benchmark", composer=composer)
        result.update(jobs=len(jobs), seconds=time.perf_counter() - started, composed=composer.composed)
        if mode == "memory":
            result["held_bytes"], result["peak_bytes"] = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            started = time.perf_counter()
            write_plan(Path(out), jobs)
            result["write_seconds"] = time.perf_counter() - started
            result["plan_bytes"] = (Path(out) / "plan.json").stat().st_size
print("RESULT " + json.dumps(result))
"""


def child(seeds: int, mode: str, timeout: float = 1800) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-plan-") as tmp:
        result = subprocess.run([sys.executable, "-c", CHILD, str(seeds), mode, tmp], cwd=ROOT,
                                env=subprocess_env(), capture_output=True, text=True, timeout=timeout)
    line = next((l for l in result.stdout.splitlines() if l.startswith("RESULT ")), None)
    if result.returncode != 0 or line is None:
        raise RuntimeError(f"planning child exited {result.returncode}: {tail(result.stderr)}")
    return json.loads(line[len("RESULT "):])


def bench_planning(sizes: Sizes, judged: bool) -> dict[str, Any]:
    """Marginal ms per job between `sizes.plan_jobs` (e.g. 600 and 3,000 jobs) against Hydra composing each job."""
    small, large = (math.ceil(n / 6) for n in sizes.plan_jobs)
    runs = [child(small, "fast"), child(large, "fast")]
    marginal_ms = 1000 * (runs[1]["seconds"] - runs[0]["seconds"]) / (runs[1]["jobs"] - runs[0]["jobs"])
    reference = child(math.ceil(sizes.plan_reference_jobs / 6), "one_by_one")
    reference_ms = 1000 * reference["seconds"] / reference["jobs"]
    big = child(math.ceil(sizes.plan_big_jobs / 6), "memory")
    combinations = 6
    ok = all(r["composed"] == 2 * combinations for r in runs + [big])   # per combination: its base and a check
    return {"id": "planning", "title": "planning the main grid (3 models × 2 regularizers × S seeds)",
            "runs": runs, "marginal_ms_per_job": marginal_ms, "reference": reference,
            "reference_ms_per_job": reference_ms, "speedup": reference_ms / marginal_ms if marginal_ms > 0 else None,
            "big": big, "ok": ok, "compositions_expected": 2 * combinations,
            "target": {"op": "<=", "value": TARGET_MS}, "judged": judged,
            "passed": judge(marginal_ms, "<=", TARGET_MS) if judged else None}
