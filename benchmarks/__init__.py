"""The performance benchmark (`python -m jobs.benchmark`): our fast paths against their baselines, in one process;
README.md's "Performance" section says what each row compares and its target. Outside the library: pipeline/ never
imports it. It measures and judges timings only; what its count rows show is held by tests/test_benchmark_checks.py.

Modules, one job each: sizes (QUICK and FULL), timing (interleaved samples, statistics, comparison entries),
workload (models, batches, configs as the commands compose them, a plain training loop), passes (hook counters),
fgsm, training, transfer_count, evaluation, planning, transfer_scaling, sweeps (Ray and the main job), launcher,
gpu (the GPU extras), table (the Markdown table) and command (arguments, stages, main). gpu_check.py is the
standalone GPU check; studies/ holds one-off studies that are not shipped.
"""
from benchmarks.command import main

__all__ = ["main"]
