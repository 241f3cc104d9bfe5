"""The sweep directory that every stage reads and writes:

    <sweep_dir>/sweep.yaml       the sweep's settings (resolved)
    <sweep_dir>/plan.json        the jobs: id, grid point, resolved config
    <sweep_dir>/jobs/<id>/       one job directory each (pipeline.store)
    <sweep_dir>/transfer.csv     long table: source, target, eps, error, agreement_*, confidence, ...
    <sweep_dir>/evaluations.csv  extra attacks and tests per job (pipeline.stages.evaluate)
    <sweep_dir>/summary.csv      one row per job × ε
    <sweep_dir>/report.md, report.html, plots/

Every file is written atomically; a stage's table is reused while what it was computed from is unchanged.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from pipeline import store
from pipeline.errors import ConfigError
from pipeline.stages.plan import Job

PLAN, SETTINGS, TRANSFER, TRANSFER_META, SUMMARY = "plan.json", "sweep.yaml", "transfer.csv", "transfer.json", "summary.csv"
EVALUATIONS, EVALUATIONS_META = "evaluations.csv", "evaluations.json"


def write_plan(sweep_dir: Path, jobs: list[Job]) -> None:
    store.write_json(sweep_dir / PLAN, [{"id": j.id, "overrides": list(j.overrides), "config": j.config} for j in jobs])


def open_sweep(stage: DictConfig) -> tuple[DictConfig, Path, list[Job]]:
    """A sweep directory's settings (its sweep.yaml, with the stage command's cluster and W&B keys) and jobs."""
    sweep_dir = Path(stage.dir)
    try:
        cfg = OmegaConf.load(sweep_dir / SETTINGS)
        entries = store.read_json(sweep_dir / PLAN)
        jobs = [Job(e["id"], tuple(e["overrides"]), e["config"]) for e in entries]
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"dir={sweep_dir} is not a sweep directory (no readable {SETTINGS} and {PLAN}); "
                          "give the folder `python -m jobs.sweep` wrote, e.g. outputs/sweeps/main") from None
    cfg = OmegaConf.merge(cfg, {"dir": str(sweep_dir), "cluster": stage.cluster, "wandb": stage.wandb})
    return cfg, sweep_dir, jobs


def job_dir(sweep_dir: Path, job: Job) -> Path:
    return store.job_dir(sweep_dir, job.id)


def complete_jobs(sweep_dir: Path, jobs: list[Job]) -> dict[str, dict[str, Any]]:
    """Metrics of the jobs whose results are complete and intact."""
    found = {job.id: store.read_metrics(job_dir(sweep_dir, job)) for job in jobs}
    return {job_id: metrics for job_id, metrics in found.items() if metrics is not None}


def failed_jobs(sweep_dir: Path, jobs: list[Job]) -> dict[str, str]:
    failures = {}
    for job in jobs:
        directory = job_dir(sweep_dir, job)
        if not store.is_complete(directory) and (directory / store.FAILURE).exists():
            failures[job.id] = store.read_json(directory / store.FAILURE).get("reason", "unknown")
    return failures


def cached_table(sweep_dir: Path, table: str, meta: str, settings: dict[str, Any], force: bool,
                 compute: Callable[[], tuple[pd.DataFrame, dict[str, Any]]]) -> pd.DataFrame:
    """The stage's table when `meta` says it was computed with these settings; else compute and write both."""
    try:
        if not force and store.read_json(sweep_dir / meta)["settings"] == settings:
            return pd.read_csv(sweep_dir / table)
    except (OSError, ValueError, KeyError):
        pass
    frame, extra = compute()
    store.atomic_write(sweep_dir / table, lambda tmp: frame.to_csv(tmp, index=False))
    store.write_json(sweep_dir / meta, {"settings": settings, **extra})
    return frame


def stage_settings(jobs: list[str], section: DictConfig) -> dict[str, Any]:
    """What a stage's table depends on: the complete jobs and the stage's config section (less `enabled`)."""
    settings = {"jobs": jobs, **OmegaConf.to_container(section, resolve=True)}
    settings.pop("enabled", None)
    return settings


def read_table(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.exists() and path.stat().st_size > 1 else pd.DataFrame()


def log_stage(sweep_dir: Path, jobs: list[Job], stage: str, tables: dict[str, pd.DataFrame],
              images: list[Path] = ()) -> None:
    """The stage's own W&B run, with the jobs' W&B settings, in the sweep's group."""
    from pipeline.config import instantiate

    if jobs:
        tracker = instantiate(OmegaConf.create(jobs[0].config["logger"]), "logger")
        tracker.log_stage(sweep_dir, stage, tables, list(images))
