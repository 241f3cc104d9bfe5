"""What a sweep does, in order: plan → train → transfer → evaluate → report, over one sweep directory
(pipeline.stages.sweep_dir). `jobs.sweep` runs them all; `jobs.transfer` and `jobs.report` re-run one.
"""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from omegaconf import DictConfig, OmegaConf

from pipeline import store
from pipeline.cluster import connect


def say(message: str) -> None:
    print(f"[sweep] {message}", file=sys.stderr, flush=True)


def connect_cluster(cfg: DictConfig) -> None:
    c = cfg.cluster
    connect(c.address, c.get("num_cpus"), c.get("num_gpus"), c.get("object_store_memory"), auth=c.get("auth", True))


class Stopwatch:
    """How long each stage took: a line per stage in the sweep's sweep.log, and where the time went at the end."""

    def __init__(self, sweep_dir: Path) -> None:
        from pipeline.stages.sweep_dir import LOG

        self.log, self.started, self.seconds = sweep_dir / LOG, time.monotonic(), {}

    def write(self, line: str) -> None:
        with open(self.log, "a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        began = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = time.monotonic() - began
            self.write(f"{name}: {self.seconds[name]:.1f}s")

    def summary(self) -> str:
        total = time.monotonic() - self.started
        parts = ", ".join(f"{name} {seconds:.0f}s" for name, seconds in self.seconds.items())
        line = f"finished in {total:.0f}s: {parts}"
        self.write(line)
        return line


def run_sweep(cfg: DictConfig) -> int:
    """The whole sweep (or, with plan_only / task, its plan or one of its jobs); returns the exit code."""
    from pipeline.paper.claims import check_epsilons
    from pipeline.stages.fetch import downloading, fetch_data
    from pipeline.stages.plan import plan
    from pipeline.stages.sweep_dir import SETTINGS, SUMMARY, write_plan
    from pipeline.stages.train import check_rerun, train_one, train_stage
    from pipeline.stages.transfer import check_transfer

    sweep_dir = store.ensure_writable(Path(cfg.dir).absolute(), "dir")   # absolute: Ray workers run elsewhere
    clock = Stopwatch(sweep_dir)
    with clock.stage("plan"):
        jobs = plan(cfg.sweep, group=cfg.sweep.name)
        check_epsilons(cfg, jobs)   # a paper experiment must measure every ε its claims read
        check_rerun(cfg.rerun)
        check_transfer(cfg.transfer, jobs)
        store.atomic_write(sweep_dir / SETTINGS, lambda tmp: OmegaConf.save(cfg, tmp, resolve=True))
        write_plan(sweep_dir, jobs)
    say(f"{len(jobs)} jobs planned in {sweep_dir}")   # slurm/*.sbatch read the folder from this line
    if cfg.plan_only:
        for index, job in enumerate(jobs):
            print(f"{index}\t{job.id}\t{' '.join(job.overrides)}")
        return 0
    if cfg.task is not None:   # one SLURM array task: no Ray, no later stages
        trained = train_one(cfg, sweep_dir, jobs, int(cfg.task))
        say(f"task {cfg.task}: {'trained' if trained else 'already complete'}")
        return 0
    if downloading(jobs):
        with clock.stage("data"):
            jobs = fetch_data(jobs)
    with clock.stage("ray"):
        connect_cluster(cfg)
    with clock.stage("train"):
        outcome = train_stage(cfg, sweep_dir, jobs)
    say(f"trained {len(outcome.trained)}, reused {len(outcome.reused)}, failed {len(outcome.failed)}")
    failed_tasks = {}   # what the transfer and evaluation tables lack (computed again by the next run)
    if cfg.transfer.enabled:
        from pipeline.stages.transfer import transfer_stage

        with clock.stage("transfer"):
            failed_tasks.update(transfer_stage(cfg, sweep_dir, jobs)[1])
    if cfg.evaluation.enabled:
        from pipeline.stages.evaluate import evaluation_stage

        with clock.stage("evaluation"):
            failed_tasks.update(evaluation_stage(cfg, sweep_dir, jobs)[1])
    from pipeline.stages.report import print_summary, report_stage

    with clock.stage("report"):
        report = report_stage(cfg, sweep_dir, jobs)
    print_summary(sweep_dir / SUMMARY, report)
    say(clock.summary())
    for job_id, reason in outcome.failed.items():
        say(f"job {job_id} failed: {reason}")
    return 1 if outcome.failed or failed_tasks else 0
