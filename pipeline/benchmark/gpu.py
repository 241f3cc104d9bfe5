"""The GPU extras (`--device cuda`): a maxout epoch over on-device tensors, and jobs per GPU with fractional packing."""
from __future__ import annotations

import os
from typing import Any

import torch

from pipeline.benchmark.sizes import Sizes
from pipeline.benchmark.sweeps import drive_sweep
from pipeline.benchmark.training import bench_lightning_epoch


def bench_gpu(sizes: Sizes, device: torch.device) -> dict[str, Any]:
    """Maxout epoch over 60,000 × 784 on-device tensors; jobs per GPU with fractional packing (1, 4, 8 per GPU)."""
    if device.type != "cuda":
        return {"skipped": "needs a GPU: run with --device cuda on a machine with CUDA"}
    epoch = bench_lightning_epoch(sizes, device, judged=True, examples=sizes.gpu_epoch_examples, models=("maxout",),
                                  batch_sizes=(100,), repeats=3)[0]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    packing = []
    for per_gpu in sizes.gpu_pack:
        spec = {"address": None, "num_cpus": os.cpu_count(), "num_gpus": 1, "jobs": sizes.gpu_pack_jobs,
                "epochs": 5, "cpus": 1, "gpus": 1 / per_gpu, "name": f"pack{per_gpu}", "models": "maxout",
                "full_size": True}
        result = drive_sweep(spec, env, timeout=1200)["rounds"][0]   # a fresh local Ray each time: cold for all
        packing.append({"jobs_per_gpu": per_gpu, "jobs": len(result["jobs"]), "wall_seconds": result["wall_seconds"],
                        "jobs_per_minute": 60 * len(result["jobs"]) / result["wall_seconds"],
                        "failed": result["failed"]})
    single = packing[0]["wall_seconds"]
    for entry in packing:
        entry["speedup_vs_1"] = single / entry["wall_seconds"]
    return {"device": torch.cuda.get_device_name(device), "maxout_epoch_60000": epoch, "packing": packing}
