"""Sweeps: packing efficiency of run_jobs on a two-node Ray cluster, the per-job overhead of short jobs, and the wall
time of the main job. Each sweep is driven from a subprocess (sweep_driver): this process never becomes a Ray driver.

A job's time is measured in its Ray task: run_job called (metrics.json: started) to metrics.json written (data,
model, Trainer.fit, FGSM curve, scores, checkpoint), without the worker's imports. Round 0 is the sweep's first
run_jobs on fresh workers (cold, what a sweep gets, and what is judged); round 1 the same jobs on those workers.
"""
from __future__ import annotations

import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from benchmarks.sizes import MAIN_JOB_LIMIT_S, Sizes
from benchmarks.timing import judge, subprocess_env, timed_command
from benchmarks.workload import plan_sweep, sweep_config
from pipeline import store

OVERHEAD_TARGET = 0.90


def plan_jobs(experiment: str, count: int, name: str, grid: dict[str, str] | None = None,
              overrides: Sequence[str] = ()) -> list:
    """The first `count` jobs of conf/experiment/<experiment> as `jobs.sweep` plans them, without W&B: `grid`
    replaces axes, `overrides` are added to every job, and the seed axis is set to as many seeds as make `count`."""
    from pipeline.stages.plan import grid_overrides

    cfg = sweep_config(f"experiment={experiment}", f"sweep.name={name}", add=[*overrides, "logger=none"])
    axes = {**cfg.sweep.grid, **(grid or {})}
    points = len(grid_overrides({axis: values for axis, values in axes.items() if axis != "seed"}))
    cfg.sweep.grid = {**axes, "seed": f"range({math.ceil(count / points)})"}
    return plan_sweep(cfg, group=name)[:count]


def sweep_driver(spec_path: str) -> None:
    """Run in a subprocess: join (or start) Ray, train the planned jobs with run_jobs, write what was measured."""
    from pipeline.cluster import connect
    from pipeline.stages.sweep_dir import job_dir
    from pipeline.stages.train import run_jobs

    spec = store.read_json(Path(spec_path))
    connect(spec["address"], spec.get("num_cpus"), spec.get("num_gpus"))
    import ray

    jobs = plan_jobs(spec["experiment"], spec["jobs"], spec["name"], spec.get("grid"), spec.get("overrides", ()))
    rounds = []
    for number in range(spec.get("rounds", 1)):   # round 0 starts the workers; later rounds reuse them (warm)
        sweep_dir = Path(spec["dir"]) / f"round{number}"
        began_at, started = time.time(), time.perf_counter()
        outcome = run_jobs(jobs, sweep_dir, cpus=spec["cpus"], gpus=spec["gpus"], force=True, poll_seconds=0.5)
        wall, per_job = time.perf_counter() - started, []
        for job in jobs:
            if (metrics := store.read_metrics(job_dir(sweep_dir, job))) is None:
                continue
            began, ended = metrics["started"], (job_dir(sweep_dir, job) / store.METRICS).stat().st_mtime
            per_job.append({"id": job.id, "label": job.label, "node": metrics.get("ray_node_id"),
                            "cuda_visible_devices": metrics.get("cuda_visible_devices"),
                            "job_seconds": ended - began, "train_seconds": metrics["train_seconds"],
                            "started_after": began - began_at, "ended_after": ended - began_at})
        rounds.append({"wall_seconds": wall, "jobs": per_job, "trained": len(outcome.trained),
                       "failed": outcome.failed})
    store.write_json(Path(spec["out"]), {"rounds": rounds, "cluster_resources": ray.cluster_resources()})
    ray.shutdown()


def drive_sweep(spec: dict[str, Any], env: dict[str, str], timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        spec = {**spec, "dir": str(Path(tmp) / "sweep"), "out": str(Path(tmp) / "result.json")}
        store.write_json(Path(tmp) / "spec.json", spec)
        code = "import sys; from benchmarks.sweeps import sweep_driver; sweep_driver(sys.argv[1])"
        entry, _ = timed_command([sys.executable, "-c", code, str(Path(tmp) / "spec.json")], env, timeout)
        if entry["returncode"] != 0 or not Path(spec["out"]).exists():
            raise RuntimeError(f"sweep driver exited {entry['returncode']}: {entry.get('error')}")
        return store.read_json(Path(spec["out"]))


def sweep_rounds(result: dict[str, Any], planned: int) -> tuple[int, list[dict[str, Any]]]:
    """Slots, and each round's efficiency: (Σ job time / slots) / wall time; a round that lost jobs measured
    nothing."""
    slots, rounds = int(result["cluster_resources"].get("CPU", 0) // 1), []
    for r in result["rounds"]:
        jobs, wall = r["jobs"], r["wall_seconds"]
        if r["trained"] != planned or r["failed"]:
            raise RuntimeError(f"{r['trained']} of {planned} jobs trained; failed: {r['failed']}")
        job_seconds, train_seconds = sum(j["job_seconds"] for j in jobs), sum(j["train_seconds"] for j in jobs)
        nodes = sorted({j["node"] for j in jobs})
        rounds.append({"jobs": len(jobs), "trained": r["trained"], "wall_seconds": wall,
                       "sum_job_seconds": job_seconds, "sum_train_seconds": train_seconds,
                       "efficiency": job_seconds / slots / wall, "efficiency_train_only": train_seconds / slots / wall,
                       "jobs_per_node": {n: sum(j["node"] == n for j in jobs) for n in nodes}, "per_job": jobs})
    return slots, rounds


def bench_sweep(sizes: Sizes, address: str | None, judged: bool) -> dict[str, Any]:
    """Packing efficiency of run_jobs on a two-node Ray cluster (started here unless `address` is given)."""
    spec = {"address": address, "experiment": sizes.sweep_experiment, "jobs": sizes.sweep_jobs,
            "overrides": list(sizes.sweep_overrides), "cpus": 1, "gpus": 0, "name": "benchmark", "rounds": 2}
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        if address is not None:
            result = drive_sweep(spec, subprocess_env(RAY_USAGE_STATS_ENABLED="0"), timeout=900)
        else:
            from pipeline.cluster.local import RayCluster

            with RayCluster(Path(tmp), num_cpus=1) as cluster:
                result = drive_sweep({**spec, "address": cluster.address}, cluster.env, timeout=900)
    slots, (cold, warm) = sweep_rounds(result, sizes.sweep_jobs)
    return {"id": "sweep", "title": "sweep on a two-node local Ray cluster", "address": address, "slots": slots,
            "planned": sizes.sweep_jobs, "experiment": sizes.sweep_experiment, **cold, "warm": warm,
            "target": {"op": ">=", "value": 0.85}, "judged": judged,
            "passed": judge(cold["efficiency"], ">=", 0.85) if judged else None}


def bench_overhead(sizes: Sizes, judged: bool) -> dict[str, Any]:
    """Per-job overhead: `sizes.overhead_jobs` one-epoch softmax jobs on Ray started on this machine (one slot per
    core), cold and warm. Efficiency = Σ train time (Trainer.fit) / (wall × slots); the rest is split into each
    job's own other work (data, Trainer, FGSM curve, files, W&B) and the time between jobs (Ray's scheduling,
    worker start, idle slots)."""
    spec = {"address": None, "experiment": "main", "grid": {"model": "softmax", "regularizer": "none"},
            "jobs": sizes.overhead_jobs, "overrides": ["trainer.max_epochs=1"], "cpus": 1, "gpus": 0,
            "name": "overhead", "rounds": 2}
    result = drive_sweep(spec, subprocess_env(RAY_USAGE_STATS_ENABLED="0"), timeout=3600)
    slots, rounds = sweep_rounds(result, sizes.overhead_jobs)
    for entry in rounds:
        jobs = entry.pop("per_job")
        entry["where"] = {"training": entry["efficiency_train_only"],
                          "rest of each job": entry["efficiency"] - entry["efficiency_train_only"],
                          "between jobs": 1 - entry["efficiency"]}
        entry["mean_job_seconds"] = entry["sum_job_seconds"] / len(jobs)
        entry["mean_train_seconds"] = entry["sum_train_seconds"] / len(jobs)
    cold, warm = rounds
    return {"id": "overhead", "title": f"per-job overhead: {sizes.overhead_jobs} one-epoch softmax jobs, Ray on "
                                       f"this machine", "slots": slots, "cold": cold, "warm": warm,
            "target": {"op": ">=", "value": OVERHEAD_TARGET}, "judged": judged,
            "passed": judge(warm["efficiency"], ">=", OVERHEAD_TARGET) if judged else None}


def run_main_job(overrides: Sequence[str] = (), timeout: float = 900) -> dict[str, Any]:
    """`python -m jobs.sweep dir=<tmp> <overrides>` (local Ray, W&B offline): wall time, exit code, the trained line."""
    with tempfile.TemporaryDirectory(prefix="bench-main-") as tmp:
        entry, stderr = timed_command([sys.executable, "-m", "jobs.sweep", f"dir={Path(tmp) / 'main'}", *overrides],
                                      subprocess_env(WANDB_MODE="offline"), timeout)
    trained = next((line for line in stderr.splitlines() if line.startswith("[sweep] trained")), None)
    return {**entry, "trained": trained}


def bench_main_job(timeout: float = 900) -> dict[str, Any]:
    """Wall time of the real main job, `python -m jobs.sweep dir=<tmp>` (local Ray, W&B offline)."""
    entry = run_main_job(timeout=timeout)
    wall = entry["wall_seconds"]
    return {"id": "main_job", "command": "python -m jobs.sweep dir=<tmp>", **entry,
            "target": {"op": "<=", "value": MAIN_JOB_LIMIT_S}, "judged": True,
            "passed": entry["returncode"] == 0 and wall is not None and wall <= MAIN_JOB_LIMIT_S}


def bench_auth(timeout: float = 900) -> dict[str, Any]:
    """The main job with Ray's token authentication (the default) and without (`cluster.auth=false`), one after the
    other: what the token costs (expected: nothing beyond the noise)."""
    off = run_main_job(["cluster.auth=false"], timeout)
    on = run_main_job(timeout=timeout)
    if on["returncode"] != 0 or off["returncode"] != 0:
        raise RuntimeError(f"the main job failed: auth on: {on.get('error')}; off: {off.get('error')}")
    return {"id": "auth", "title": "the main job, Ray token authentication on / off", "on": on, "off": off,
            "ratio": on["wall_seconds"] / off["wall_seconds"]}
