"""What a sweep does, in order: plan → train → transfer → evaluate → report, over one sweep directory
(pipeline.stages.sweep_dir). `jobs.sweep` runs them all; `jobs.transfer` and `jobs.report` re-run one.
"""
from __future__ import annotations

import sys
import time

from omegaconf import DictConfig, OmegaConf

from pipeline import store
from pipeline.cluster import connect


def say(message: str) -> None:
    print(f"[sweep] {message}", file=sys.stderr, flush=True)


def connect_cluster(cfg: DictConfig) -> None:
    c = cfg.cluster
    connect(c.address, c.get("num_cpus"), c.get("num_gpus"), c.get("object_store_memory"))


def run_sweep(cfg: DictConfig) -> int:
    """The whole sweep (or, with plan_only / task, its plan or one of its jobs); returns the exit code."""
    from pathlib import Path

    from pipeline.stages.plan import plan
    from pipeline.stages.sweep_dir import SETTINGS, SUMMARY, write_plan

    started = time.monotonic()
    sweep_dir = store.ensure_writable(Path(cfg.dir), "dir")
    jobs = plan(cfg.sweep, group=cfg.sweep.name)
    store.atomic_write(sweep_dir / SETTINGS, lambda tmp: OmegaConf.save(cfg, tmp, resolve=True))
    write_plan(sweep_dir, jobs)
    say(f"{len(jobs)} jobs planned in {sweep_dir}")
    if cfg.plan_only:
        for index, job in enumerate(jobs):
            print(f"{index}\t{job.id}\t{' '.join(job.overrides)}")
        return 0
    from pipeline.stages.train import train_one, train_stage

    if cfg.task is not None:   # one SLURM array task: no Ray, no later stages
        trained = train_one(cfg, sweep_dir, jobs, int(cfg.task))
        say(f"task {cfg.task}: {'trained' if trained else 'already complete'}")
        return 0
    connect_cluster(cfg)
    outcome = train_stage(cfg, sweep_dir, jobs)
    say(f"trained {len(outcome.trained)}, reused {len(outcome.reused)}, failed {len(outcome.failed)}")
    if cfg.transfer.enabled:
        from pipeline.stages.transfer import transfer_stage

        transfer = transfer_stage(cfg, sweep_dir, jobs)
    else:
        import pandas as pd

        transfer = pd.DataFrame()
    if cfg.evaluation.enabled:
        from pipeline.stages.evaluate import evaluation_stage

        evaluation_stage(cfg, sweep_dir, jobs)
    from pipeline.stages.report import print_summary, report_stage

    report = report_stage(cfg, sweep_dir, jobs, transfer)
    print_summary(sweep_dir / SUMMARY, report)
    say(f"finished in {time.monotonic() - started:.0f}s")
    for job_id, reason in outcome.failed.items():
        say(f"job {job_id} failed: {reason}")
    return 1 if outcome.failed else 0
