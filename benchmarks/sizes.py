"""What the benchmark runs: the fixed constants of its comparisons and its two sizes, QUICK (CI) and FULL."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]   # the repository: conf/ and the jobs the benchmark starts
INPUT_SHAPE, CLASSES = (1, 28, 28), 10
EPSILONS = [round(0.03 * k, 2) for k in range(1, 11)]   # 10 values, 0.03 .. 0.30 (none is 0: no free ε for either side)
ONE_EPS = 0.25
ALPHA = 0.5
MAIN_JOB_LIMIT_S = 300.0


@dataclass(frozen=True)
class Sizes:
    models: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    repeats: int               # interleaved A/B pairs per comparison
    min_seconds: float         # each timed sample repeats the operation until it lasts this long
    epoch_examples: int        # examples per training epoch (Lightning vs plain loop)
    epoch_repeats: int
    transfer_models: int       # M
    transfer_epsilons: int     # K
    transfer_examples: int     # test-set size (fits one batch of 1,000)
    sweep_experiment: str      # the sweep comparison: the first `sweep_jobs` jobs of this experiment,
    sweep_jobs: int
    sweep_overrides: tuple[str, ...]   # ... with these overrides
    gpu_epoch_examples: int
    gpu_pack_jobs: int
    gpu_pack: tuple[int, ...]  # jobs per GPU
    plan_jobs: tuple[int, int]  # planning: the marginal cost per job between these two sizes
    plan_reference_jobs: int   # ... against Hydra composing each of this many jobs
    plan_big_jobs: int         # a large plan_only as a user runs it: time, peak memory, plan.json
    transfer_seeds: tuple[int, ...]   # the transfer stage for 2 models × S seeds
    overhead_jobs: int         # one-epoch softmax jobs for the per-job overhead
    evaluation_examples: int   # test digits of the evaluation stage's per-attack times (a job's test split: 1,000)
    autoattack_limits: tuple[int, ...]   # AutoAttack's cost by survivors attacked (its `limit`)


QUICK = Sizes(models=("softmax", "maxout"), batch_sizes=(100,), repeats=2, min_seconds=0.0, epoch_examples=200,
              epoch_repeats=1, transfer_models=3, transfer_epsilons=4, transfer_examples=200,
              sweep_experiment="smoke", sweep_jobs=4, sweep_overrides=("trainer.max_epochs=1",),
              gpu_epoch_examples=6_000, gpu_pack_jobs=4, gpu_pack=(1, 4), plan_jobs=(60, 300),
              plan_reference_jobs=30, plan_big_jobs=1_000, transfer_seeds=(1, 2, 4), overhead_jobs=8,
              evaluation_examples=100, autoattack_limits=())
FULL = Sizes(models=("softmax", "maxout"), batch_sizes=(100, 1000), repeats=9, min_seconds=0.2, epoch_examples=10_000,
             epoch_repeats=5, transfer_models=4, transfer_epsilons=10, transfer_examples=1000,
             sweep_experiment="main", sweep_jobs=6, sweep_overrides=(),
             gpu_epoch_examples=60_000, gpu_pack_jobs=8, gpu_pack=(1, 4, 8), plan_jobs=(600, 3_000),
             plan_reference_jobs=120, plan_big_jobs=100_002, transfer_seeds=(2, 8, 32), overhead_jobs=200,
             evaluation_examples=1000, autoattack_limits=(5, 25, 100))
