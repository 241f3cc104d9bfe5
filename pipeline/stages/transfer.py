"""The transfer matrix: FGSM examples crafted on each source model, predicted by every target model.

For every source and ε the adversarial test set is crafted once, from one input gradient per batch shared by
all ε, and every target model predicts it. Only models trained on the same data are compared. One task per
source model (pipeline.cluster.tasks).

Per (source, target, ε) row: the target's error rate, mean confidence and confidence on its mistakes; the
paper's agreement on the wrong class, over examples both models misclassify (`agreement_both_wrong`) and over
the source's mistakes (`agreement_source_wrong`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch
from omegaconf import DictConfig

from pipeline import store
from pipeline.attacks import input_gradient, predict, step
from pipeline.cluster.tasks import run_tasks
from pipeline.stages.plan import Job
from pipeline.stages.sweep_dir import (TRANSFER, TRANSFER_META, cached_table, complete_jobs, job_dir, log_stage,
                                       stage_settings)


def _mean(values: torch.Tensor, mask: torch.Tensor) -> float:
    return float(values[mask].float().mean()) if mask.any() else float("nan")


def transfer_rows(source_id: str, targets: dict[str, torch.nn.Module], x: torch.Tensor, y: torch.Tensor,
                  epsilons: Sequence[float], clip: tuple[float, float] | None, craft_with: str = "true",
                  batch_size: int = 1000) -> tuple[list[dict[str, Any]], int]:
    """Rows for one source model (which is `targets[source_id]`) and the number of input gradients taken."""
    source = targets[source_id]
    predictions = {t: [[] for _ in epsilons] for t in targets}
    confidences = {t: [[] for _ in epsilons] for t in targets}
    gradients = 0
    for start in range(0, len(y), batch_size):
        xb, yb = x[start: start + batch_size], y[start: start + batch_size]
        grad, _ = input_gradient(source, xb, yb if craft_with == "true" else None)
        gradients += 1
        direction = grad.sign()
        for k, eps in enumerate(epsilons):
            adv = step(xb, direction, eps, clip)
            for name, model in targets.items():
                confidence, predicted = predict(model, adv)
                predictions[name][k].append(predicted)
                confidences[name][k].append(confidence)
    rows = []
    for k, eps in enumerate(epsilons):
        source_pred = torch.cat(predictions[source_id][k])
        source_wrong = source_pred != y
        for name in targets:
            pred, conf = torch.cat(predictions[name][k]), torch.cat(confidences[name][k])
            wrong = pred != y
            agree = pred == source_pred
            rows.append({"source": source_id, "target": name, "eps": float(eps),
                         "error": float(wrong.float().mean()), "confidence": float(conf.mean()),
                         "confidence_wrong": _mean(conf, wrong), "source_error": float(source_wrong.float().mean()),
                         "agreement_both_wrong": _mean(agree, wrong & source_wrong),
                         "agreement_source_wrong": _mean(agree, source_wrong),
                         "both_wrong": int((wrong & source_wrong).sum())})
    return rows, gradients


def transfer_from_source(source_id: str, job_dirs: dict[str, str], epsilons: Sequence[float],
                         clip: Sequence[float] | None, craft_with: str, batch_size: int) -> dict[str, Any]:
    """One source model against every target (runs as a Ray task): loads the models and the source's test set."""
    from pipeline.data import test_set

    x, y = test_set(store.read_config(Path(job_dirs[source_id])))
    targets = {job: store.load_model(directory) for job, directory in job_dirs.items()}
    rows, gradients = transfer_rows(source_id, targets, x, y, epsilons, tuple(clip) if clip else None,
                                    craft_with, batch_size)
    return {"rows": rows, "gradients": gradients}


def data_key(job_dir: Path) -> str:
    """Jobs are comparable when they were trained and tested on the same data."""
    return json.dumps(store.read_config(Path(job_dir))["data"], sort_keys=True)


def run_transfer(job_dirs: dict[str, Path], epsilons: Sequence[float], clip: Sequence[float] | None = (0.0, 1.0),
                 craft_with: str = "true", batch_size: int = 1000, cpus: float = 1, gpus: float = 0,
                 retries: int = 2) -> tuple[list[dict], int]:
    """All transfer rows of a sweep's complete jobs and the total input gradients taken."""
    groups: dict[str, dict[str, str]] = {}
    for job, directory in job_dirs.items():
        groups.setdefault(data_key(directory), {})[job] = str(directory)
    calls = {source: (source, group, list(epsilons), list(clip) if clip else None, craft_with, batch_size)
             for group in groups.values() for source in group}
    outcome = run_tasks("transfer", transfer_from_source, calls, cpus, gpus, retries)
    if outcome.failed:
        raise RuntimeError("transfer failed for " + "; ".join(f"{k}: {v}" for k, v in outcome.failed.items()))
    results = [outcome.results[source] for source in calls]
    return [row for r in results for row in r["rows"]], sum(r["gradients"] for r in results)


def transfer_stage(cfg: DictConfig, sweep_dir: Path, jobs: list[Job], force: bool = False) -> pd.DataFrame:
    """The transfer table over the complete jobs; reused when it already covers exactly these jobs. Its W&B run
    holds the table."""
    complete = sorted(complete_jobs(sweep_dir, jobs))
    if not complete:
        return pd.DataFrame()
    by_id = {job.id: job for job in jobs}
    section = cfg.transfer

    def compute() -> tuple[pd.DataFrame, dict[str, Any]]:
        rows, gradients = run_transfer({j: job_dir(sweep_dir, by_id[j]) for j in complete}, section.epsilons,
                                       section.clip, section.craft_with, section.batch_size,
                                       gpus=section.get("gpu", 0), retries=cfg.retries)
        return pd.DataFrame(rows), {"input_gradients": gradients}

    table = cached_table(sweep_dir, TRANSFER, TRANSFER_META, stage_settings(complete, section), force, compute)
    log_stage(sweep_dir, jobs, "transfer", {"transfer": table})
    return table
