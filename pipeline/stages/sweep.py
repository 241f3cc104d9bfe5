"""The sweep, stage after stage: plan → train → transfer → evaluate → report, over one sweep directory
(pipeline.stages.sweep_dir). `jobs.sweep` runs them all; `jobs.transfer` and `jobs.report` re-run one.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from omegaconf import DictConfig, OmegaConf, open_dict

from pipeline import store
from pipeline.cluster import check_fits, connect
from pipeline.stages.sweep_dir import say


def connect_cluster(cfg: DictConfig) -> None:
    c = cfg.cluster
    connect(c.address, c.get("num_cpus"), c.get("num_gpus"), c.get("object_store_memory"), auth=c.get("auth", True))


class Stopwatch:
    """How long each stage took: a line per stage in the sweep's sweep.log, and where the time went at the end."""

    def __init__(self, sweep_dir: Path) -> None:
        from pipeline.stages.sweep_dir import LOG

        self.log, self.started, self.seconds = sweep_dir / LOG, time.monotonic(), {}
        self.waiting: list[str] | None = []   # lines kept until the sweep is accepted (a refused one writes none)

    def write(self, line: str) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n"
        if self.waiting is not None:
            self.waiting.append(line)
            return
        self.append([line])

    def accept(self) -> None:
        """The sweep will run: write the lines kept so far, and the next ones as they come."""
        waiting, self.waiting = self.waiting or [], None
        self.append(waiting)

    def append(self, lines: list[str]) -> None:
        with store.open_entry(self.log, "ab") as f:   # a sweep.log that links elsewhere is refused, not followed
            f.write("".join(lines).encode())

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


def record_plan(cfg: DictConfig, sweep_dir: Path, jobs: list) -> None:
    """sweep.yaml and plan.json, each written only when it changed: the array tasks of one sweep plan the same jobs
    (the settings are kept without `task` and `plan_only`, which differ between its commands)."""
    from pipeline.stages.sweep_dir import SETTINGS, write_plan

    settings = OmegaConf.merge(cfg, {"task": None, "plan_only": False})
    store.write_if_changed(sweep_dir / SETTINGS, OmegaConf.to_yaml(settings, resolve=True))
    write_plan(sweep_dir, jobs)


def with_job_data(cfg: DictConfig, given: Sequence[str]) -> DictConfig:
    """The sweep's settings with the jobs' data options from its command line (`data=arrays data.path=d.npz`)
    appended to `sweep.add`, after the experiment's own overrides; the `data` node that carried them is dropped."""
    from pipeline.stages.plan import job_data_overrides

    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.pop("data", None)
        cfg.sweep.add = [*(cfg.sweep.get("add") or []), *job_data_overrides(given)]
    return cfg


def run_sweep(cfg: DictConfig, given: Sequence[str] = (), experiment: str | None = None) -> int:
    """The whole sweep (or, with plan_only / task, its plan or one of its jobs); returns the exit code. `given`:
    the sweep's own command-line overrides; `experiment`: the experiment it was composed from (both say where the
    grid's axes came from, and the jobs' data options among `given` reach every job)."""
    from pipeline.stages.fetch import downloading, fetch_data
    from pipeline.stages.plan import grid_origin, plan
    from pipeline.stages.sweep_dir import PLAN, SUMMARY
    from pipeline.stages.train import check_rerun, train_one, train_stage
    from pipeline.stages.transfer_pairs import check_transfer

    # Nothing is written into the folder until the sweep is accepted: plan_only and a sweep refused (bad settings,
    # too few resources) leave a sweep that already ran there as it was.
    cfg = with_job_data(cfg, given)
    sweep_dir = store.ensure_writable(Path(cfg.dir).absolute(), "dir")   # absolute: Ray workers run elsewhere
    clock = Stopwatch(sweep_dir)
    with clock.stage("plan"):
        jobs = plan(cfg.sweep, group=cfg.sweep.name)
        if any(job.of_the_paper for job in jobs):   # its claims (and pandas) only where they judge something
            from pipeline.paper.claims import check_claimed_epsilons

            check_claimed_epsilons(cfg, jobs)   # a paper experiment must measure every ε its claims read
        check_rerun(cfg.rerun)
        check_transfer(cfg.transfer, jobs)
    say(f"{len(jobs)} jobs planned in {sweep_dir}")   # slurm/*.sbatch read the folder from this line
    say(grid_origin(jobs, given, experiment))
    if cfg.plan_only:
        if not (sweep_dir / PLAN).exists():   # a new sweep's plan, for array tasks and jobs.report
            record_plan(cfg, sweep_dir, jobs)
        for index, job in enumerate(jobs):
            print(f"{index}\t{job.id}\t{' '.join(job.overrides)}")
        return 0
    if cfg.task is not None:   # one SLURM array task: no Ray, no later stages
        record_plan(cfg, sweep_dir, jobs)
        clock.accept()
        say(f"task {cfg.task}: {train_one(cfg, sweep_dir, jobs, int(cfg.task))}")
        return 0
    if downloading(jobs):
        with clock.stage("data"):
            jobs = fetch_data(jobs)
    with clock.stage("ray"):
        connect_cluster(cfg)
        check_fits(cfg.resources.cpu, cfg.resources.gpu)
    record_plan(cfg, sweep_dir, jobs)
    clock.accept()
    with clock.stage("train"):
        outcome = train_stage(cfg, sweep_dir, jobs)
    say(outcome.counts())
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
