"""Transfer: FGSM examples crafted on one model (one input gradient per batch, every ε from it) and scored on
others: their error, their confidence, and how often they agree with the source's wrong class."""
from __future__ import annotations

from typing import Any, Sequence

import torch

from pipeline.attacks.base import input_gradient, predict, step


def _mean(values: torch.Tensor, mask: torch.Tensor) -> float:
    return float(values[mask].float().mean()) if mask.any() else float("nan")


def transfer_rows(source_id: str, source: torch.nn.Module, targets: dict[str, torch.nn.Module], x: torch.Tensor,
                  y: torch.Tensor, epsilons: Sequence[float], clip: tuple[float, float] | None,
                  craft_with: str = "true", batch_size: int = 1000) -> tuple[list[dict[str, Any]], int]:
    """Rows for one source model against `targets` (which may hold the source itself) and the number of input
    gradients taken."""
    models = {source_id: source, **targets}   # the source predicts too: its mistakes define the agreement
    predictions = {t: [[] for _ in epsilons] for t in models}
    confidences = {t: [[] for _ in epsilons] for t in models}
    gradients = 0
    for start in range(0, len(y), batch_size):
        xb, yb = x[start: start + batch_size], y[start: start + batch_size]
        grad, _ = input_gradient(source, xb, yb if craft_with == "true" else None)
        gradients += 1
        direction = grad.sign()
        for k, eps in enumerate(epsilons):
            adv = step(xb, direction, eps, clip)
            for name, model in models.items():
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
