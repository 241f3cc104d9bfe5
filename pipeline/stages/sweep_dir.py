"""The sweep directory that every stage reads and writes:

    <sweep_dir>/sweep.yaml       the sweep's settings (resolved)
    <sweep_dir>/plan.json        the jobs: id, grid point, resolved config
    <sweep_dir>/jobs/<id>/       one job directory each (pipeline.store)
    <sweep_dir>/transfer.csv     long table: source, target, eps, error, agreement_*, confidence, ...
    <sweep_dir>/transfer_settings.csv  the same per (source setting, target setting, ε): mean over seeds, interval
    <sweep_dir>/evaluations.csv  extra attacks and tests per job (pipeline.stages.evaluate)
    <sweep_dir>/diagnostics.csv  did the attacks work? one row per job and check (pipeline.evaluation.diagnostics)
    <sweep_dir>/parts/<stage>/   the stages' tables in parts, one per task, named by a hash of what the task read
    <sweep_dir>/summary.csv      one row per job × ε
    <sweep_dir>/report.md, report.html, plots/
    <sweep_dir>/sweep.log        how long each stage took, one line per run of the sweep

Every file is written atomically. A stage computes only the parts of its table whose inputs (jobs' checkpoints,
settings, the stage's code) changed; the others are reused.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

from omegaconf import DictConfig, OmegaConf

from pipeline import store
from pipeline.cluster.tasks import Outcome, run_tasks
from pipeline.errors import ConfigError
from pipeline.planned_job import ID, Job

if TYPE_CHECKING:   # pandas is imported by the functions that build tables: planning never needs it
    import pandas as pd

PLAN, SETTINGS, SUMMARY, LOG, PARTS = "plan.json", "sweep.yaml", "summary.csv", "sweep.log", "parts"
TRANSFER, TRANSFER_SETTINGS, TRANSFER_META = "transfer.csv", "transfer_settings.csv", "transfer.json"
EVALUATIONS = "evaluations.csv"
DIAGNOSTICS = "diagnostics.csv"     # job_id, check, value, threshold, flag (pipeline/evaluation/diagnostics.py)
ID_COLUMNS = {"job_id": str, "source": str, "target": str}   # hex ids that pandas would otherwise read as numbers


def say(message: str) -> None:
    """A line of the sweep's progress, on stderr (slurm/*.sbatch read some of them)."""
    print(f"[sweep] {message}", file=sys.stderr, flush=True)


def write_plan(sweep_dir: Path, jobs: list[Job]) -> None:
    """plan.json, unless it holds this plan already (array tasks: one writes it, the others read it)."""
    def lines() -> Iterator[str]:   # one job a line, written as they come: 100,000 jobs are never one string
        for index, job in enumerate(jobs):
            entry = {"id": job.id, "overrides": list(job.overrides), "config": job.config}
            yield ("[" if index == 0 else ",") + json.dumps(entry) + "\n"
        yield "]\n" if jobs else "[]\n"

    store.write_if_changed(sweep_dir / PLAN, lines())


def open_sweep(stage: DictConfig) -> tuple[DictConfig, Path, list[Job]]:
    """A sweep directory's settings (its sweep.yaml, with the stage command's cluster and W&B keys) and jobs."""
    sweep_dir = Path(stage.dir).absolute()
    try:
        cfg = OmegaConf.load(sweep_dir / SETTINGS)
        entries = store.read_json(sweep_dir / PLAN)
        jobs = [Job(e["id"], tuple(e["overrides"]), dict(e["config"])) for e in entries]
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"dir={sweep_dir} is not a sweep directory (no readable {SETTINGS} and {PLAN}); "
                          "give the folder `python -m jobs.sweep` wrote, e.g. outputs/sweeps/main") from None
    checked_plan(cfg, jobs, sweep_dir)
    cfg = OmegaConf.merge(cfg, {"dir": str(sweep_dir), "cluster": stage.cluster, "wandb": stage.wandb})
    return cfg, sweep_dir, jobs


def checked_plan(cfg: DictConfig, jobs: list[Job], sweep_dir: Path) -> None:
    """A sweep folder may have been written by someone else: its files are data. Refuse interpolations in
    sweep.yaml and plan.json, ids that are not job ids (they become paths) and names that are not plain words
    (they become file names), each in one line. What a job config names as code is checked where it is built
    (pipeline.trust)."""
    from pipeline import trust
    from pipeline.names import plain_word

    trust.plain_values(OmegaConf.to_container(cfg, resolve=False), sweep_dir / SETTINGS)
    for job in jobs:
        if not isinstance(job.id, str) or not ID.fullmatch(job.id):
            raise ConfigError(f"{sweep_dir / PLAN}: job id {job.id!r} is refused: a job id is 12 hex digits (the hash "
                              "the planner names a job with)")
        trust.plain_values(job.config, sweep_dir / PLAN, job.id)
        data, model = (job.config[key] if isinstance(job.config.get(key), dict) else {} for key in ("data", "model"))
        plain_word(data.get("name"), f"{job.id}.data.name", sweep_dir / PLAN)
        if model.get("name") is not None:   # a zoo member's name
            plain_word(model["name"], f"{job.id}.model.name", sweep_dir / PLAN)


def job_dir(sweep_dir: Path, job: Job) -> Path:
    return store.job_path(sweep_dir, job.id)


def complete_jobs(sweep_dir: Path, jobs: list[Job]) -> dict[str, dict[str, Any]]:
    """Metrics of the jobs whose results are complete and intact."""
    found = {job.id: store.read_metrics(job_dir(sweep_dir, job)) for job in jobs}
    return {job_id: metrics for job_id, metrics in found.items() if metrics is not None}


def failed_jobs(sweep_dir: Path, jobs: list[Job], complete: Mapping[str, Any]) -> dict[str, str]:
    """The reason of each job that is not `complete` (complete_jobs' result) and left a failure record."""
    failures = {}
    for job in jobs:
        directory = job_dir(sweep_dir, job)
        if job.id not in complete and (directory / store.FAILURE).exists():
            failures[job.id] = store.read_json(directory / store.FAILURE).get("reason", "unknown")
    return failures


def checkpoints(sweep_dir: Path, job_ids: Sequence[str], metrics: Mapping[str, dict[str, Any]]) -> list[list[str]]:
    """[job id, checkpoint sha256] of each job: what a stage's part read (a retrained job changes it)."""
    return [[job_id, metrics[job_id]["checkpoint"]["sha256"]] for job_id in job_ids]


def part_key(inputs: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


def table_from_parts(sweep_dir: Path, stage: str, function: Callable[..., dict[str, Any]],
                     tasks: Mapping[str, Sequence[Any]], columns: Sequence[str], cpus: float = 1, gpus: float = 0,
                     retries: int = 2, force: bool = False) -> tuple[pd.DataFrame, Outcome]:
    """A stage's table from one part per task (part key -> the task's arguments; `function` returns {"rows": ...}).
    Parts already on disk are reused (all recomputed with force); the others run as tasks and each is written as
    its task finishes, so an interrupted stage keeps what it finished. Parts no task names any more are removed."""
    import pandas as pd

    folder = store.inside(sweep_dir, f"{PARTS}/{stage}", "parts folder")   # a symlink out of the sweep is refused
    folder.mkdir(parents=True, exist_ok=True)
    existing = {path.stem for path in folder.glob("*.csv")}
    todo = {key: args for key, args in tasks.items() if force or key not in existing}

    def write(key: str, result: dict[str, Any]) -> None:
        frame = pd.DataFrame(result["rows"], columns=list(columns))
        store.atomic_write(folder / f"{key}.csv", lambda tmp: frame.to_csv(tmp, index=False))

    outcome = run_tasks(stage, function, todo, cpus, gpus, retries, already_done=len(tasks) - len(todo),
                        on_result=write)
    for key in existing - set(tasks):
        part = folder / f"{key}.csv"
        if part.is_file() and not part.is_symlink():   # regular files only: a link is no part this stage wrote
            part.unlink()
    frames = [read_table(folder / f"{key}.csv") for key in tasks if (folder / f"{key}.csv").exists()]
    frames = [frame for frame in frames if len(frame)]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(columns))
    return table, outcome


def stage_failures(stage: str, outcome: Outcome) -> None:
    for key, reason in outcome.failed.items():
        print(f"[{stage}] task {key} failed: {reason}", file=sys.stderr, flush=True)


def read_table(path: Path) -> pd.DataFrame:
    import pandas as pd

    if not path.exists() or path.stat().st_size <= 1:
        return pd.DataFrame()
    header = pd.read_csv(path, nrows=0).columns
    return pd.read_csv(path, dtype={c: t for c, t in ID_COLUMNS.items() if c in header})


def log_stage(sweep_dir: Path, jobs: list[Job], stage: str, tables: dict[str, pd.DataFrame],
              images: list[Path] = (), html: Path | None = None) -> None:
    """The stage's own W&B run, with the jobs' W&B settings, in the sweep's group (`html`: a page it holds too)."""
    from pipeline.config import instantiate

    settings = (jobs[0].config.get("logger") or {}).get("wandb") if jobs else None
    if settings:   # the jobs log to W&B (logger=wandb, alone or with others)
        tracker = instantiate(OmegaConf.create(settings), "logger.wandb", origin=sweep_dir / PLAN)
        tracker.log_stage(sweep_dir, stage, tables, list(images), html)
