"""Train a sweep's jobs: one Ray task per job wherever there is room (pipeline.cluster.tasks), or one job in this
process (a SLURM array task). Job directories live on storage every node sees; a job whose results are already
complete is not run again.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pipeline import store
from pipeline.cluster.tasks import first_line, run_tasks
from pipeline.errors import ConfigError
from pipeline.stages.plan import Job
from pipeline.stages.sweep_dir import job_dir


@dataclass
class Trained:
    trained: list[str] = field(default_factory=list)      # job ids trained in this run
    reused: list[str] = field(default_factory=list)       # job ids whose results were already complete
    failed: dict[str, str] = field(default_factory=dict)  # job id -> reason


def train_job(config: dict[str, Any], directory: str, run_name: str) -> dict[str, Any]:
    """The body of one task: the same `run_job` as `jobs.train`."""
    import ray

    from pipeline.job import run_job

    extra = {"ray_node_id": ray.get_runtime_context().get_node_id()} if ray.is_initialized() else {}
    metrics = run_job(OmegaConf.create(config), Path(directory), run_name=run_name, extra=extra)
    return {"job_id": metrics["job_id"], "node": extra.get("ray_node_id"), "seconds": metrics["train_seconds"]}


def run_jobs(jobs: list[Job], sweep_dir: Path, cpus: float = 1, gpus: float = 0, retries: int = 2,
             force: bool = False, poll_seconds: float = 2.0) -> Trained:
    """Train every job whose results are missing or incomplete (all of them with force=True)."""
    outcome = Trained()
    todo = []
    for job in jobs:
        if not force and store.is_complete(job_dir(sweep_dir, job)):
            outcome.reused.append(job.id)
        else:
            todo.append(job)
    calls = {job.id: (job.config, str(job_dir(sweep_dir, job)), job.label) for job in todo}
    ran = run_tasks("train", train_job, calls, cpus, gpus, retries, already_done=len(outcome.reused),
                    reason=lambda job_id, error: failure_reason(store.job_dir(sweep_dir, job_id), error),
                    poll_seconds=poll_seconds)
    outcome.trained, outcome.failed = list(ran.results), ran.failed
    return outcome


def train_stage(cfg: DictConfig, sweep_dir: Path, jobs: list[Job]) -> Trained:
    return run_jobs(jobs, sweep_dir, cfg.resources.cpu, cfg.resources.gpu, cfg.retries, cfg.force)


def train_one(cfg: DictConfig, sweep_dir: Path, jobs: list[Job], index: int) -> bool:
    """Train job number `index` of the plan in this process (one SLURM array task); False if already complete."""
    from pipeline.job import run_job

    if not 0 <= index < len(jobs):
        raise ConfigError(f"task={index} is outside the plan; this sweep has jobs 0..{len(jobs) - 1}")
    job = jobs[index]
    directory = job_dir(sweep_dir, job)
    if not cfg.force and store.is_complete(directory):
        return False
    run_job(OmegaConf.create(job.config), directory, run_name=job.label)
    return True


def failure_reason(directory: Path, error: BaseException) -> str:
    """The job's own failure record when it wrote one, else the first line of Ray's error."""
    try:
        return store.read_json(directory / store.FAILURE)["reason"]
    except (OSError, ValueError, KeyError):
        return first_line(error)
