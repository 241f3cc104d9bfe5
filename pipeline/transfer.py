"""The transfer matrix: FGSM examples crafted on each source model, predicted by every target model.

For every source and ε the adversarial test set is crafted once, from one input gradient per batch shared by
all ε, and every target model predicts it. Only models trained on the same data are compared. One Ray task per
source model.

Per (source, target, ε) row: the target's error rate, mean confidence and confidence on its mistakes; the
paper's agreement on the wrong class, over examples both models misclassify (`agreement_both_wrong`) and over
the source's mistakes (`agreement_source_wrong`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch

from pipeline import store
from pipeline.attacks import input_gradient, predict, step


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
    from omegaconf import OmegaConf

    from pipeline.job import instantiate

    cfg = OmegaConf.load(Path(job_dirs[source_id]) / store.CONFIG)
    data = instantiate(cfg.data, "data", seed=cfg.seed)
    data.setup()
    x, y = data.splits["test"]
    targets = {job: store.load_model(directory) for job, directory in job_dirs.items()}
    rows, gradients = transfer_rows(source_id, targets, x, y, epsilons, tuple(clip) if clip else None,
                                    craft_with, batch_size)
    return {"rows": rows, "gradients": gradients}


def data_key(job_dir: Path) -> str:
    """Jobs are comparable when they were trained and tested on the same data."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(Path(job_dir) / store.CONFIG)
    return json.dumps(OmegaConf.to_container(cfg.data, resolve=True), sort_keys=True)


def run_transfer(job_dirs: dict[str, Path], epsilons: Sequence[float], clip: Sequence[float] | None = (0.0, 1.0),
                 craft_with: str = "true", batch_size: int = 1000, cpus: float = 1) -> tuple[list[dict], int]:
    """All transfer rows of a sweep's complete jobs (as Ray tasks) and the total input gradients taken."""
    import ray

    groups: dict[str, dict[str, str]] = {}
    for job, directory in job_dirs.items():
        groups.setdefault(data_key(directory), {})[job] = str(directory)
    task = ray.remote(max_calls=0)(transfer_from_source).options(num_cpus=cpus, max_retries=2, name="transfer")
    refs = [task.remote(source, group, list(epsilons), list(clip) if clip else None, craft_with, batch_size)
            for group in groups.values() for source in group]
    results = ray.get(refs)
    return [row for r in results for row in r["rows"]], sum(r["gradients"] for r in results)
