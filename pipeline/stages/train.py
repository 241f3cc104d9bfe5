"""Train a sweep's jobs: one Ray task per job wherever there is room (pipeline.cluster.tasks), or one job in this
process (a SLURM array task). Job directories live on storage every node sees. A job whose results are complete
is reused, also when other code made them (stale: named in the output); `rerun=stale` retrains those, `force=true`
everything. An interrupted job goes on from its last epoch (pipeline.training.resume); its output lands in its job.log.
"""
from __future__ import annotations

import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pipeline import store
from pipeline.cluster.tasks import run_tasks
from pipeline.errors import ConfigError
from pipeline.models.model_file import is_pretrained
from pipeline.provenance import made_by_this_code
from pipeline.planned_job import Job
from pipeline.stages.sweep_dir import job_dir, say

RERUN = ("missing", "stale")


@dataclass
class Trained:
    trained: list[str] = field(default_factory=list)      # job ids trained in this run
    reused: list[str] = field(default_factory=list)       # job ids whose results were already complete
    failed: dict[str, str] = field(default_factory=dict)  # job id -> reason
    stale: list[str] = field(default_factory=list)        # complete jobs made by other code (reused or retrained)
    evaluated: list[str] = field(default_factory=list)    # job ids of models trained elsewhere, evaluated in this run

    def counts(self) -> str:
        """'trained 2, evaluated 1 (trained elsewhere), reused 0, failed 0' (no `evaluated` when there are none)."""
        evaluated = f", evaluated {len(self.evaluated)} (trained elsewhere)" if self.evaluated else ""
        return f"trained {len(self.trained)}{evaluated}, reused {len(self.reused)}, failed {len(self.failed)}"


def check_rerun(rerun: str) -> str:
    if rerun not in RERUN:
        raise ConfigError(f"rerun={rerun!r}; use missing (train jobs without complete results) or stale (also "
                          "retrain those made by other code); force=true retrains everything")
    return rerun


def run_logged(config: dict[str, Any], directory: Path, run_name: str, **extra: Any) -> dict[str, Any]:
    """The same `run_job` as `jobs.train`, with everything it prints (a traceback too) in the job's job.log, while
    this process holds the job (store.claim: raises store.Busy when another one does)."""
    from pipeline.training.job import run_job

    with store.claim(directory), store.job_log(directory):
        try:
            return run_job(OmegaConf.create(config), directory, run_name=run_name, extra=extra)
        except BaseException:
            traceback.print_exc()
            raise


def train_job(config: dict[str, Any], directory: str, run_name: str) -> dict[str, Any]:
    """The body of one Ray task."""
    from pipeline.cluster import ray_node

    node = ray_node()
    metrics = run_logged(config, Path(directory), run_name, **node)
    return {"job_id": metrics["job_id"], "node": node.get("ray_node_id"), "seconds": metrics["train_seconds"]}


def is_stale(metrics: dict[str, Any] | None) -> bool:
    return metrics is not None and not made_by_this_code(metrics)


def needs_training(metrics: dict[str, Any] | None, force: bool, rerun: str) -> bool:
    """Missing or incomplete results; stale ones with rerun=stale; all with force."""
    return force or metrics is None or (rerun == "stale" and is_stale(metrics))


def from_scratch(directory: Path) -> None:
    """force=true: an interrupted attempt's last.ckpt is not this run's starting point."""
    (directory / store.LAST).unlink(missing_ok=True)


def say_stale(jobs: list[Job], stale: list[str], retrain: bool) -> None:
    if not stale:
        return
    ids = set(stale)
    settings = Counter(job.setting for job in jobs if job.id in ids)
    listed = ", ".join(f"{setting} ×{count}" for setting, count in settings.most_common())
    action = "retraining them (rerun=stale)" if retrain else "reusing them; rerun=stale retrains them"
    say(f"{len(stale)} complete jobs were made by other code ({listed}): {action}")


def run_jobs(jobs: list[Job], sweep_dir: Path, cpus: float = 1, gpus: float = 0, retries: int = 2,
             force: bool = False, rerun: str = "missing", poll_seconds: float = 2.0) -> Trained:
    """Train every job whose results are missing or incomplete; with rerun="stale" also those made by other code,
    with force=True all of them, from scratch."""
    outcome = Trained()
    todo = []
    for job in jobs:
        directory = job_dir(sweep_dir, job)
        metrics = None if force else store.read_metrics(directory)
        if is_stale(metrics):
            outcome.stale.append(job.id)
        if needs_training(metrics, force, rerun):
            if force:
                from_scratch(directory)
            todo.append(job)
        else:
            outcome.reused.append(job.id)
    say_stale(jobs, outcome.stale, rerun == "stale")
    calls = {job.id: (job.config, str(job_dir(sweep_dir, job)), job.label) for job in todo}
    ran = run_tasks("train", train_job, calls, cpus, gpus, retries, already_done=len(outcome.reused),
                    reason=lambda job_id, error: store.failure_reason(store.job_path(sweep_dir, job_id), error),
                    poll_seconds=poll_seconds)
    elsewhere = {job.id for job in todo if is_pretrained(job.config.get("model") or {})}
    outcome.trained = [job_id for job_id in ran.results if job_id not in elsewhere]
    outcome.evaluated, outcome.failed = [job_id for job_id in ran.results if job_id in elsewhere], ran.failed
    return outcome


def train_stage(cfg: DictConfig, sweep_dir: Path, jobs: list[Job]) -> Trained:
    return run_jobs(jobs, sweep_dir, cfg.resources.cpu, cfg.resources.gpu, cfg.retries, cfg.force,
                    check_rerun(cfg.get("rerun", "missing")))


def train_one(cfg: DictConfig, sweep_dir: Path, jobs: list[Job], index: int) -> str:
    """Train job number `index` of the plan in this process (one SLURM array task); what happened, in words."""
    if not 0 <= index < len(jobs):
        raise ConfigError(f"task={index} is outside the plan; this sweep has jobs 0..{len(jobs) - 1}")
    job = jobs[index]
    directory = job_dir(sweep_dir, job)
    metrics = None if cfg.force else store.read_metrics(directory)
    if not needs_training(metrics, cfg.force, check_rerun(cfg.get("rerun", "missing"))):
        return "already complete"
    if cfg.force:
        from_scratch(directory)
    say(f"job {job.id} ({job.label}): its output goes to {directory / store.LOG}")
    try:
        run_logged(job.config, directory, job.label)
    except store.Busy as busy:   # a second task for this job (resubmitted while the first still runs)
        return f"left to the other process: {busy}"
    return "evaluated (trained elsewhere)" if is_pretrained(job.config.get("model") or {}) else "trained"
