"""The stages of a sweep over one sweep directory: plan → train → transfer → evaluation → report.

    <sweep_dir>/plan.json        the jobs: id, grid point, resolved config
    <sweep_dir>/jobs/<id>/       one job directory each (pipeline.store)
    <sweep_dir>/transfer.csv     long table: source, target, eps, error, agreement_*, confidence, ...
    <sweep_dir>/evaluations.csv  extra attacks and tests per job (pipeline.evaluations)
    <sweep_dir>/summary.csv      one row per job × ε
    <sweep_dir>/report.md, report.html, plots/

Every stage can be re-run on its own (jobs.transfer, jobs.report); each writes its files atomically.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from pipeline import store
from pipeline.errors import ConfigError
from pipeline.plan import Job, plan
from pipeline.schedule import Outcome, connect, job_dir, run_jobs

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


def connect_cluster(cfg: DictConfig) -> None:
    c = cfg.cluster
    connect(c.address, c.get("num_cpus"), c.get("num_gpus"), c.get("object_store_memory"))


def plan_stage(cfg: DictConfig) -> tuple[Path, list[Job]]:
    sweep_dir = store.ensure_writable(Path(cfg.dir), "dir")
    jobs = plan(cfg.sweep, group=cfg.sweep.name)
    store.atomic_write(sweep_dir / SETTINGS, lambda tmp: OmegaConf.save(cfg, tmp, resolve=True))
    write_plan(sweep_dir, jobs)
    return sweep_dir, jobs


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


def train_stage(cfg: DictConfig, sweep_dir: Path, jobs: list[Job]) -> Outcome:
    return run_jobs(jobs, sweep_dir, cfg.resources.cpu, cfg.resources.gpu, cfg.retries, cfg.force)


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


def transfer_stage(cfg: DictConfig, sweep_dir: Path, jobs: list[Job], force: bool = False) -> pd.DataFrame:
    """The transfer table over the complete jobs; reused when it already covers exactly these jobs."""
    from pipeline.transfer import run_transfer

    complete = sorted(complete_jobs(sweep_dir, jobs))
    if not complete:
        return pd.DataFrame()
    by_id = {job.id: job for job in jobs}

    def compute() -> tuple[pd.DataFrame, dict[str, Any]]:
        rows, gradients = run_transfer({j: job_dir(sweep_dir, by_id[j]) for j in complete}, cfg.transfer.epsilons,
                                       cfg.transfer.clip, cfg.transfer.craft_with, cfg.transfer.batch_size)
        return pd.DataFrame(rows), {"input_gradients": gradients}

    return cached_table(sweep_dir, TRANSFER, TRANSFER_META, stage_settings(complete, cfg.transfer), force, compute)


def evaluation_stage(cfg: DictConfig, sweep_dir: Path, jobs: list[Job], force: bool = False) -> pd.DataFrame:
    """evaluations.csv over the complete jobs (pipeline.evaluations); reused when it covers exactly these jobs."""
    from pipeline.evaluations import COLUMNS, run_evaluations

    complete = sorted(complete_jobs(sweep_dir, jobs))
    if not complete:
        return pd.DataFrame(columns=COLUMNS)
    by_id = {job.id: job for job in jobs}
    settings = stage_settings(complete, cfg.evaluation)

    def compute() -> tuple[pd.DataFrame, dict[str, Any]]:
        rows = run_evaluations({j: job_dir(sweep_dir, by_id[j]) for j in complete}, settings)
        return pd.DataFrame(rows, columns=COLUMNS), {}

    return cached_table(sweep_dir, EVALUATIONS, EVALUATIONS_META, settings, force, compute)


def read_table(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.exists() and path.stat().st_size > 1 else pd.DataFrame()


def summary_frame(jobs: list[Job], metrics: dict[str, dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for job in jobs:
        m = metrics.get(job.id)
        if m is None:
            continue
        choices = job.config.get("choices", {})
        for point in m["curve"]:
            rows.append({"job_id": job.id, "label": job.label, "setting": job.setting, "model": choices.get("model"),
                         "regularizer": choices.get("regularizer"), "data": choices.get("data"),
                         "seed": job.config.get("seed"), **point, "clean_error": m["clean_error"],
                         "clean_confidence": m["clean_confidence"], "train_error": m["train_error"],
                         "node": m.get("ray_node_id", m.get("node"))})
    return pd.DataFrame(rows)


def first_of_each_setting(jobs: list[Job], complete: Any) -> list[Job]:
    """One complete job per setting (the first in plan order, i.e. the lowest seed)."""
    chosen: dict[str, Job] = {}
    for job in jobs:
        if job.id in complete:
            chosen.setdefault(job.setting, job)
    return list(chosen.values())


def example_images(sweep_dir: Path, jobs: list[Job], count: int,
                   epsilons: list[float]) -> dict[str, tuple[list, list[str]]]:
    """The first `count` test digits and their FGSM versions (each job's own attack clipping), for `jobs`."""
    from pipeline.attacks import fgsm
    from pipeline.evaluations import test_set

    examples = {}
    for job in jobs if count > 0 else []:
        x, y = (t[:count] for t in test_set(job.config))
        model = store.load_model(job_dir(sweep_dir, job))
        clip = job.config["attack"].get("clip")
        images = [fgsm(model, x, y, eps, tuple(clip) if clip else None) if eps > 0 else x for eps in epsilons]
        examples[job.id] = (images, [f"ε={eps:g}" for eps in epsilons])
    return examples


def report_stage(cfg: DictConfig, sweep_dir: Path, jobs: list[Job], transfer: pd.DataFrame) -> Path:
    """summary.csv, the paper's figures and the report, from the complete jobs and the earlier stages' tables."""
    from pipeline.verdicts import Results
    from pipeline.figures import draw_figures
    from pipeline.job import instantiate
    from pipeline.report import PLOTS, write_report

    metrics = complete_jobs(sweep_dir, jobs)
    summary = summary_frame(jobs, metrics)
    store.atomic_write(sweep_dir / SUMMARY, lambda tmp: summary.to_csv(tmp, index=False))
    complete = [job for job in jobs if job.id in metrics]
    results = Results.of({job.id: job.config for job in complete}, summary, transfer,
                         read_table(sweep_dir / EVALUATIONS))
    (sweep_dir / PLOTS).mkdir(parents=True, exist_ok=True)
    report_cfg = cfg.report
    figures = draw_figures(results, {job.id: job_dir(sweep_dir, job) for job in complete}, sweep_dir / PLOTS,
                           report_cfg.get("logit_range", 1.0), report_cfg.get("filters", 24))
    examples = example_images(sweep_dir, first_of_each_setting(jobs, metrics), report_cfg.images,
                              list(cfg.transfer.epsilons))
    report = write_report(sweep_dir, cfg.sweep.name, results, failed_jobs(sweep_dir, jobs), examples, figures)
    if jobs:   # the stage runs use the jobs' W&B settings, in the sweep's group
        tracker = instantiate(OmegaConf.create(jobs[0].config["logger"]), "logger")
        plots = sorted((sweep_dir / PLOTS).glob("*.png"))
        tracker.log_stage(sweep_dir, "transfer", {"transfer": transfer}, [p for p in plots if p.name.startswith("transfer")])
        tracker.log_stage(sweep_dir, "summary", {"summary": summary}, [p for p in plots if not p.name.startswith("transfer")])
    return report


def print_summary(summary_csv: Path, report: Path, stream=sys.stdout) -> None:
    summary = pd.read_csv(summary_csv) if summary_csv.exists() and summary_csv.stat().st_size > 1 else pd.DataFrame()
    if summary.empty:
        print(f"no complete jobs; report: {report}", file=stream)
        return
    table = summary.pivot_table(index="setting", columns="eps", values="error")
    print("FGSM test error by ε (mean over seeds):", file=stream)
    print((table * 100).round(1).to_string(), file=stream)
    print(f"report: {report}", file=stream)
