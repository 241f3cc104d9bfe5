"""The FGSM comparisons: our fgsm_curve and fgsm against torchattacks' FGSM, on the same models and batches (that
they compute the same is tests/test_attacks.py's job)."""
from __future__ import annotations

import functools
from typing import Any, Callable

import torch

from benchmarks.sizes import EPSILONS, ONE_EPS, Sizes
from benchmarks.timing import comparison, interleaved, synchronizer
from benchmarks.workload import make_batch, make_model

Sides = Callable[[Any, torch.nn.Module, torch.Tensor, torch.Tensor], tuple[Callable[[], Any], Callable[[], Any]]]


def baseline_curve(model: torch.nn.Module, attacks: list, x: torch.Tensor, y: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The torchattacks way to an FGSM curve: one attack per ε, then score its examples (confidence, prediction)."""
    confidences, predictions = [], []
    for attack in attacks:
        adv = attack(x, y)
        with torch.no_grad():
            confidence, predicted = model(adv).softmax(dim=-1).max(dim=-1)
        confidences.append(confidence)
        predictions.append(predicted)
    return torch.stack(confidences), torch.stack(predictions)


def versus_torchattacks(cid: str, title: str, labels: tuple[str, str], target: float, sides: Sides, sizes: Sizes,
                        device: torch.device, judged: bool) -> list[dict[str, Any]] | dict[str, Any]:
    """Ours against torchattacks on every model × batch size: `sides` builds both calls on an eval-mode model and a
    batch; the ratio is torchattacks time / our time (a skipped entry without torchattacks)."""
    try:
        import torchattacks
    except ImportError:
        return {"id": cid, "skipped": "torchattacks is not installed (pip install -e '.[dev]')"}
    sync, rows = synchronizer(device), []
    for name in sizes.models:
        for batch in sizes.batch_sizes:
            model = make_model(name, device).eval()
            x, y = make_batch(batch, device)
            ours, theirs = sides(torchattacks, model, x, y)
            t_ours, t_theirs = interleaved(ours, theirs, sizes.repeats, sizes.min_seconds, sync)
            rows.append(comparison(
                cid, title, name, batch, (labels[0], t_ours), (labels[1], t_theirs),
                [b / a for a, b in zip(t_ours, t_theirs)], "torchattacks time / our time", ">=", target, judged))
    return rows


def bench_fgsm_curve(sizes: Sizes, device: torch.device, judged: bool) -> list[dict[str, Any]] | dict[str, Any]:
    from pipeline.attacks import fgsm_curve

    def sides(torchattacks, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
        attacks = [torchattacks.FGSM(model, eps=eps) for eps in EPSILONS]
        return (functools.partial(fgsm_curve, model, x, y, EPSILONS),
                functools.partial(baseline_curve, model, attacks, x, y))

    return versus_torchattacks("fgsm_curve", f"FGSM robustness curve, {len(EPSILONS)} ε",
                               ("ours: fgsm_curve", "torchattacks FGSM per ε + scoring forward"), 3.0, sides, sizes,
                               device, judged)


def bench_fgsm(sizes: Sizes, device: torch.device, judged: bool) -> list[dict[str, Any]] | dict[str, Any]:
    from pipeline.attacks import fgsm

    def sides(torchattacks, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
        return functools.partial(fgsm, model, x, y, ONE_EPS), functools.partial(torchattacks.FGSM(model, eps=ONE_EPS),
                                                                                 x, y)

    return versus_torchattacks("fgsm", f"FGSM, one ε ({ONE_EPS})", ("ours: fgsm", "torchattacks FGSM"), 1.0, sides,
                               sizes, device, judged)
