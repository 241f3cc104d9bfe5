"""What a fresh Ray worker per GPU task costs (pipeline/cluster/tasks.py: `max_calls=1` for GPU tasks) against
one long-lived worker per GPU slot (an actor holding 1/n of a GPU, which keeps its CUDA device for life).

    PYTHONPATH=$PWD python benchmarks/studies/worker_reuse.py [--tasks 8] [--slots 2]

Runs on a machine without a GPU (Ray's GPUs are then logical: the scheduling and the worker start-ups are real, the
CUDA work is not). Each task imports what a job imports (torch, Lightning, pipeline.training.job) and does nothing
else, so the difference is the per-task start-up a fresh worker pays. Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import time


def job_imports() -> int:
    import pytorch_lightning  # noqa: F401 - what every job imports

    import pipeline.training.job  # noqa: F401

    return os.getpid()


def main() -> None:
    import ray
    from ray.util import ActorPool

    from pipeline.cluster import connect

    parser = argparse.ArgumentParser(prog="benchmarks/studies/worker_reuse.py")
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--slots", type=int, default=2, help="jobs per GPU (each asks for 1/slots of it)")
    args = parser.parse_args()
    connect(None, num_cpus=args.slots, num_gpus=1, object_store_memory=100_000_000)   # a private Ray here
    share = 1 / args.slots
    results = {}

    began = time.perf_counter()
    task = ray.remote(max_calls=1)(job_imports).options(num_cpus=1, num_gpus=share)
    pids = ray.get([task.remote() for _ in range(args.tasks)])
    results["max_calls_1"] = {"seconds": time.perf_counter() - began, "workers": len(set(pids))}

    @ray.remote(num_cpus=1, num_gpus=share)
    class Slot:
        def run(self) -> int:
            return job_imports()

    began = time.perf_counter()
    pool = ActorPool([Slot.remote() for _ in range(args.slots)])
    pids = list(pool.map(lambda slot, _: slot.run.remote(), range(args.tasks)))
    results["worker_per_slot"] = {"seconds": time.perf_counter() - began, "workers": len(set(pids))}
    for entry in results.values():
        entry["seconds_per_task"] = entry["seconds"] / args.tasks
    print(json.dumps({"tasks": args.tasks, "slots": args.slots, **results}))
    ray.shutdown()


if __name__ == "__main__":
    main()
