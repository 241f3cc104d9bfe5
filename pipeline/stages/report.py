"""The report stage: summary.csv (one row per job × ε), the paper's claims and figures, adversarial examples, and
report.md / report.html (pipeline.report), from the complete jobs and the earlier stages' tables."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import pandas as pd
from omegaconf import DictConfig

from pipeline import store
from pipeline.provenance import made_by_this_code
from pipeline.planned_job import Job
from pipeline.stages.sweep_dir import (DIAGNOSTICS, EVALUATIONS, PLAN, SUMMARY, TRANSFER, TRANSFER_SETTINGS,
                                       complete_jobs, failed_jobs, job_dir, log_stage, read_table)

if TYPE_CHECKING:   # the report's modules load when the stage runs
    from pipeline.report.plots import Examples


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


def example_images(sweep_dir: Path, jobs: list[Job], count: int, epsilons: list[float]) -> dict[str, "Examples"]:
    """The first `count` test images, their FGSM versions (each job's own attack clipping) and the model's
    predictions on each, for `jobs`."""
    from pipeline.attacks import as_clip, fgsm, predict
    from pipeline.data import test_set
    from pipeline.report.plots import Examples

    examples = {}
    for job in jobs if count > 0 else []:
        x, y = (t[:count] for t in test_set(job.config, sweep_dir / PLAN))
        model = store.load_model(job_dir(sweep_dir, job))
        clip = as_clip(job.config["attack"].get("clip"))
        images = [fgsm(model, x, y, eps, clip) if eps > 0 else x for eps in epsilons]
        examples[job.id] = Examples([f"ε={eps:g}" for eps in epsilons], images, y.tolist(),
                                    [predict(model, batch)[1].tolist() for batch in images])
    return examples


def enabled_table(cfg: DictConfig, stage: str, path: Path) -> pd.DataFrame:
    """A stage's table as the last run of the stage left it; empty when the sweep turned the stage off."""
    return read_table(path) if cfg[stage].enabled else pd.DataFrame()


def report_stage(cfg: DictConfig, sweep_dir: Path, jobs: list[Job]) -> Path:
    """summary.csv, the paper's figures and the report; its W&B run holds the summary and the plots. Its steps are
    reported as they finish, like the other stages' tasks."""
    from pipeline.cluster.tasks import Progress
    from pipeline.paper.figures import draw_figures
    from pipeline.paper.results import Results
    from pipeline.report.plots import PLOTS
    from pipeline.report.sweep_report import on_papers_data, write_report

    steps = Progress("report", 5)
    steps.show(0, 1, 0)
    metrics = complete_jobs(sweep_dir, jobs)
    summary = summary_frame(jobs, metrics)
    store.atomic_write(sweep_dir / SUMMARY, lambda tmp: summary.to_csv(tmp, index=False))
    complete = [job for job in jobs if job.id in metrics]
    results = Results.of({job.id: job.config for job in complete}, summary,
                         enabled_table(cfg, "transfer", sweep_dir / TRANSFER),
                         enabled_table(cfg, "evaluation", sweep_dir / EVALUATIONS),
                         enabled_table(cfg, "transfer", sweep_dir / TRANSFER_SETTINGS),
                         enabled_table(cfg, "evaluation", sweep_dir / DIAGNOSTICS))
    store.inside(sweep_dir, PLOTS, "plots folder").mkdir(parents=True, exist_ok=True)   # a link out is refused
    report_cfg = cfg.report
    steps.show(1, 1, 0)
    # the paper's figures are of its MNIST settings: drawn from the jobs on MNIST's digits only
    figures = draw_figures(on_papers_data(results), {job.id: job_dir(sweep_dir, job) for job in complete},
                           sweep_dir / PLOTS, report_cfg.get("logit_range", 1.0), report_cfg.get("filters", 24))
    steps.show(2, 1, 0)
    examples = example_images(sweep_dir, first_of_each_setting(jobs, metrics), report_cfg.images,
                              list(cfg.transfer.epsilons))
    steps.show(3, 1, 0)
    stale = [job.setting for job in complete if not made_by_this_code(metrics[job.id])]
    report = write_report(sweep_dir, cfg.sweep.name, results, failed_jobs(sweep_dir, jobs, metrics), examples, figures,
                          stale, (cfg.evaluation.get("diagnostics") or {}).get("eps", 0.25))
    steps.show(4, 1, 0)
    log_stage(sweep_dir, jobs, "summary", {"summary": summary}, sorted((sweep_dir / PLOTS).glob("*.png")), html=report)
    steps.show(5, 0, 0)
    return report


def print_summary(summary_csv: Path, report: Path, stream: TextIO = sys.stdout) -> None:
    summary = read_table(summary_csv)
    if summary.empty:
        print(f"no complete jobs; report: {report}", file=stream)
        return
    table = summary.pivot_table(index="setting", columns="eps", values="error")
    print("FGSM test error by ε (mean over seeds):", file=stream)
    print((table * 100).round(1).to_string(), file=stream)
    print(f"report: {report}", file=stream)
