"""The GPU extras (`--device cuda`): a maxout epoch over on-device tensors, and jobs per GPU with fractional packing."""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch

from benchmarks.sizes import Sizes
from benchmarks.sweeps import drive_sweep
from benchmarks.timing import subprocess_env
from benchmarks.training import bench_lightning_epoch


def bench_gpu(sizes: Sizes, device: torch.device) -> dict[str, Any]:
    """Maxout epoch over `sizes.gpu_epoch_examples` on-device MNIST-size tensors (60,000 at full size); jobs per GPU
    with fractional packing (`sizes.gpu_pack` jobs per GPU)."""
    epoch_sizes = dataclasses.replace(sizes, epoch_examples=sizes.gpu_epoch_examples, models=("maxout",),
                                      batch_sizes=(100,), epoch_repeats=3)
    epoch = bench_lightning_epoch(epoch_sizes, device, judged=True)[0]
    return {"device": torch.cuda.get_device_name(device), "maxout_epoch_60000": epoch,
            "packing": gpu_packing(sizes, "main", epochs=5)}


def gpu_packing(sizes: Sizes, experiment: str, epochs: int, timeout: float = 1200) -> list[dict[str, Any]]:
    """For each n of `sizes.gpu_pack`: a fresh local Ray with one GPU and all of this machine's CPUs trains
    `sizes.gpu_pack_jobs` maxout jobs of `experiment` (1 CPU each), each asking for 1/n of the GPU. Ray's GPU is a
    logical resource, so on a machine without one this still runs and shows Ray's packing (the tests run it that
    way); only on a real GPU do the timings say how many jobs one GPU can hold."""
    # Without a GPU, Ray's GPU is a fake one CUDA cannot see: let the jobs run on the CPU instead of failing.
    env = subprocess_env(RAY_USAGE_STATS_ENABLED="0", HARNESS_REQUIRE_CUDA="1" if torch.cuda.is_available() else "0")
    packing = []
    for per_gpu in sizes.gpu_pack:
        spec = {"address": None, "num_cpus": os.cpu_count(), "num_gpus": 1, "experiment": experiment,
                "jobs": sizes.gpu_pack_jobs, "grid": {"model": "maxout"}, "overrides": [f"trainer.max_epochs={epochs}"],
                "cpus": 1, "gpus": 1 / per_gpu, "name": f"pack{per_gpu}"}
        result = drive_sweep(spec, env, timeout=timeout)["rounds"][0]   # a fresh local Ray each time: cold for all
        jobs = result["jobs"]
        packing.append({"jobs_per_gpu": per_gpu, "jobs": len(jobs), "wall_seconds": result["wall_seconds"],
                        "jobs_per_minute": 60 * len(jobs) / result["wall_seconds"], "failed": result["failed"],
                        "most_at_once": most_at_once(jobs),
                        "cuda_visible_devices": sorted({str(j["cuda_visible_devices"]) for j in jobs})})
    single = packing[0]["wall_seconds"]
    for entry in packing:
        entry["speedup_vs_1"] = single / entry["wall_seconds"]
    return packing


def most_at_once(jobs: list[dict[str, Any]]) -> int:
    """The most jobs that were running at the same moment (from their start and end times)."""
    events = sorted([(j["started_after"], 1) for j in jobs] + [(j["ended_after"], -1) for j in jobs])
    running = most = 0
    for _, change in events:   # at equal times an end (-1) sorts first: back-to-back jobs do not overlap
        running += change
        most = max(most, running)
    return most
