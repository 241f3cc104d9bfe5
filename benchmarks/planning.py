"""Planning at scale: the marginal cost per job of planning the main grid (3 models × 2 regularizers × S seeds) at
two sizes, the same jobs composed one by one by Hydra (what planning did before), and a large plan as a user runs it
(`python -m jobs.sweep plan_only=true`): its wall time, its peak memory and plan.json's size. Each plan runs in a
fresh subprocess (no warm caches).
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.sizes import ROOT, Sizes
from benchmarks.timing import judge, subprocess_env, tail
from benchmarks.workload import plan_sweep, sweep_config

TARGET_MS = 3.0   # marginal planning cost per job
BIG_TARGET = {"seconds": 30.0, "peak_bytes": 1e9}   # a 100,002-job plan_only on 2 cores


def measure(seeds: int, mode: str) -> None:
    """Run in the child: plan the main grid with `seeds` seeds (`one_by_one`: Hydra composes every job, the
    reference), print one JSON line. Only the planning is timed, inside an open Hydra context."""
    from omegaconf import OmegaConf

    from pipeline.config import compose_job, hydra_context
    from pipeline.stages.composer import Composer
    from pipeline.stages.plan import conditional_overrides, grid_overrides, plan

    cfg, composer = sweep_config(f"+sweep.grid.seed='range({seeds})'"), Composer()
    result: dict[str, Any] = {"seeds": seeds, "mode": mode}
    with hydra_context():
        started = time.perf_counter()
        if mode == "one_by_one":
            points = grid_overrides(OmegaConf.to_container(cfg.sweep.grid, resolve=True))
            when = OmegaConf.to_container(cfg.sweep.when)
            for point in points:
                OmegaConf.to_container(compose_job([*cfg.sweep.overrides, *conditional_overrides(point, when),
                                                    *point]), resolve=True)
            result.update(jobs=len(points))
        else:
            result.update(jobs=len(plan(cfg.sweep, group="benchmark", composer=composer)), composed=composer.composed)
        result["seconds"] = time.perf_counter() - started
    print("RESULT " + json.dumps(result))


def child(seeds: int, mode: str, timeout: float = 1800) -> dict[str, Any]:
    code = "import sys; from benchmarks.planning import measure; measure(int(sys.argv[1]), sys.argv[2])"
    result = subprocess.run([sys.executable, "-c", code, str(seeds), mode], cwd=ROOT, env=subprocess_env(),
                            capture_output=True, text=True, timeout=timeout)
    line = next((out for out in result.stdout.splitlines() if out.startswith("RESULT ")), None)
    if result.returncode != 0 or line is None:
        raise RuntimeError(f"planning child exited {result.returncode}: {tail(result.stderr)}")
    return json.loads(line[len("RESULT "):])


def peak_memory(pid: int) -> int | None:
    """A running process's peak resident memory since its exec (VmHWM; getrusage's maxrss would count the memory
    of the process that forked it), or None once it has exited."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmHWM:")), None)


def plan_only(seeds: int) -> dict[str, Any]:
    """`python -m jobs.sweep plan_only=true` of the main grid with `seeds` seeds, as a user runs it: wall time, peak
    resident memory (read every 20 ms until it exits) and plan.json's size."""
    with tempfile.TemporaryDirectory(prefix="bench-plan-") as tmp:
        command = [sys.executable, "-m", "jobs.sweep", "plan_only=true", f"sweep.grid.seed=range({seeds})",
                   f"dir={Path(tmp) / 'sweep'}"]
        started = time.perf_counter()
        with tempfile.TemporaryFile("w+") as stderr:
            child_process = subprocess.Popen(command, cwd=tmp, env=subprocess_env(), stdout=subprocess.DEVNULL,
                                             stderr=stderr, text=True)
            peak = 0
            while child_process.poll() is None:
                peak = max(peak, peak_memory(child_process.pid) or 0)
                time.sleep(0.02)
            seconds = time.perf_counter() - started
            stderr.seek(0)
            if child_process.returncode != 0:
                raise RuntimeError(f"plan_only exited {child_process.returncode}: {tail(stderr.read())}")
        plan_file = Path(tmp) / "sweep" / "plan.json"
        return {"jobs": len(json.loads(plan_file.read_text())), "seconds": seconds, "peak_bytes": peak,
                "plan_bytes": plan_file.stat().st_size}


def bench_planning(sizes: Sizes, judged: bool) -> dict[str, Any]:
    """Marginal ms per job between `sizes.plan_jobs` (e.g. 600 and 3,000 jobs) against Hydra composing each job."""
    points = len(plan_sweep(sweep_config()))   # the main grid without seeds
    small, large = (math.ceil(n / points) for n in sizes.plan_jobs)
    runs = [child(small, "fast"), child(large, "fast")]
    marginal_ms = 1000 * (runs[1]["seconds"] - runs[0]["seconds"]) / (runs[1]["jobs"] - runs[0]["jobs"])
    reference = child(math.ceil(sizes.plan_reference_jobs / points), "one_by_one")
    reference_ms = 1000 * reference["seconds"] / reference["jobs"]
    big = plan_only(math.ceil(sizes.plan_big_jobs / points))
    big_passed = all(judge(big[key], "<=", target) for key, target in BIG_TARGET.items())
    return {"id": "planning", "title": f"planning the main grid ({points} settings × S seeds)",
            "runs": runs, "marginal_ms_per_job": marginal_ms, "reference": reference,
            "reference_ms_per_job": reference_ms, "speedup": reference_ms / marginal_ms if marginal_ms > 0 else None,
            "big": big, "big_target": BIG_TARGET, "target": {"op": "<=", "value": TARGET_MS}, "judged": judged,
            "passed": judge(marginal_ms, "<=", TARGET_MS) and big_passed if judged else None}
