"""Did the attacks work? One function per check; each returns a `Reading`: the measured value, its threshold and a
flag (value above threshold). The evaluation stage runs them on every job (diagnostics.csv), the report shows
them. Thresholds live in conf/sweep.yaml (`evaluation.diagnostics`), each with the reason for its value.

Anchors: AutoAttack's `checks.py` (random outputs, probability outputs, zero gradients, Square beating the
white-box attacks), Pintor et al. 2022 (Indicators of Attack Failure: unavailable gradients, unstable
predictions, unconstrained attack failure, incomplete optimization) and Carlini et al. 2019 (iterative ≥
single-step, error rises with ε, unbounded attacks reach 100%, more steps do not help, white-box ≥ black-box and
transfer). A model whose logits are affine in x has an exact answer, and no attack may fall short of it. And
before any of that: did the model learn? Clean error or confidence near chance makes every attack's number moot.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import torch
from torch import nn

from pipeline.attacks import Clip, Draws, apgd, input_gradient, predict
from pipeline.attacks.base import stream_seed
from pipeline.evaluation.rows import UNATTACKED, error_of
from pipeline.models.adapter import probabilities
from pipeline.models.contract import output_variation, probability_share

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ["job_id", "check", "value", "threshold", "flag"]   # diagnostics.csv


@dataclass(frozen=True)
class Reading:
    value: float
    threshold: float

    @property
    def flag(self) -> bool:
        return bool(self.value > self.threshold)


def single_step_gap(strongest: float, fgsm: float, threshold: float) -> Reading:
    """strongest − FGSM error: a large gap means FGSM (the paper's attack) overstates robustness (masking)."""
    return Reading(strongest - fgsm, threshold)


def monotone_in_eps(errors_by_eps: Sequence[tuple[float, float]], threshold: float) -> Reading:
    """The largest fall of an attack's error from one ε to the next larger one: a bigger ball holds every point
    of a smaller one, so a working attack's error never falls."""
    errors = [error for _, error in sorted(errors_by_eps)]
    return Reading(max([a - b for a, b in zip(errors, errors[1:])], default=0.0), threshold)


def unbounded(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, threshold: float, seed: int = 0
              ) -> Reading:
    """The share APGD at ε = 1 on [0, 1] (every image reachable) leaves correctly classified: an attack that
    cannot fool a model without a budget is not being led by the gradient (Pintor et al.'s unconstrained
    attack failure). Its starts are drawn per example (`seed`)."""
    draws = Draws(stream_seed("unbounded", seed), range(len(x)))
    adv = apgd(model, x, y, 1.0, steps=steps, clip=(0.0, 1.0), draws=draws)
    return Reading(float((predict(model, adv)[1] == y).float().mean()), threshold)


def black_box(square_new: int, examples: int, threshold: float) -> Reading:
    """The share Square (no gradients) fooled after every gradient attack had its turn (AutoAttack's
    `check_square_sr`, RobustBench's mark of an unreliable evaluation at 0.2 points)."""
    return Reading(square_new / max(examples, 1), threshold)


def transfer_beats_white_box(transfer_errors: Sequence[float], fgsm: float, threshold: float) -> Reading:
    """The largest error FGSM examples crafted on other models cause on this one, less its own FGSM error at the
    same ε and clipping: the model's own gradient should be the better guide."""
    return Reading(max(transfer_errors, default=float("-inf")) - fgsm, threshold)


def convergence(model: nn.Module, x: torch.Tensor, y: torch.Tensor, standing: torch.Tensor, eps: float,
                clip: Clip, steps: int, sample: int, threshold: float, seed: int = 0) -> Reading:
    """The error (of the whole set) APGD with `steps` (twice the evaluation's) adds on the examples every attack
    left standing, estimated on at most `sample` of them: gains mean the attacks stopped short (Pintor et al.'s
    incomplete optimization). The sample and APGD's starts are drawn from `seed`, the starts per example."""
    index = standing.nonzero().squeeze(1)
    if len(index) == 0 or eps == 0:
        return Reading(0.0, threshold)
    index = index[torch.randperm(len(index), generator=torch.Generator().manual_seed(seed))[:sample]]
    draws = Draws(stream_seed("convergence", seed), index.tolist())
    adv = apgd(model, x[index], y[index], eps, steps=steps, clip=clip, draws=draws)
    gained = float((predict(model, adv)[1] != y[index]).float().mean())
    return Reading(gained * len(standing.nonzero()) / len(x), threshold)


def zero_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, threshold: float) -> Reading:
    """The share of examples whose input gradient is zero everywhere (AutoAttack's `check_zero_gradients`)."""
    grad, _ = input_gradient(model, x, y)
    return Reading(float((grad.flatten(1).abs().sum(dim=1) == 0).float().mean()), threshold)


def stochastic_outputs(model: nn.Module, x: torch.Tensor, threshold: float) -> Reading:
    """The largest difference between two eval-mode passes on the same inputs (AutoAttack's `check_randomized`)."""
    return Reading(output_variation(model, x), threshold)


@torch.no_grad()
def probability_outputs(model: nn.Module, x: torch.Tensor, threshold: float) -> Reading:
    """The share of output rows that look like probabilities, not logits (AutoAttack's `check_range_output`)."""
    was_training = model.training
    model.eval()
    try:
        return Reading(probability_share(model(x)), threshold)
    finally:
        model.train(was_training)


def chance_error(clean_error: float, classes: int, threshold: float) -> Reading:
    """Clean error as a share of a guess's, 1 − 1/K: 0 for a model always right, 1 for one that guesses. A model
    that has not learned is fooled by any perturbation, so its errors under attack say nothing of robustness."""
    return Reading(clean_error / (1 - 1 / classes), threshold)


def chance_confidence(confidence: float, classes: int, threshold: float, normalized: bool = True) -> Reading:
    """How far the mean clean confidence stays below certainty, as a share of a guess's distance 1 − 1/K: 0 for a
    model always certain, 1 for one whose outputs are uniform (confidence 1/K). A model can leave chance's error
    behind while its outputs stay near uniform (a conv net after 3 epochs of SGD: 42% error, 11.9% confidence).
    Only where the class probabilities sum to 1: the paper's per-class RBF is unconfident by design (a trained one:
    20% error at 16% confidence), so its confidence says nothing of chance (NaN: never flagged)."""
    return Reading((1 - confidence) / (1 - 1 / classes) if normalized else float("nan"), threshold)


def exact_gap(exact: float, strongest: float, threshold: float) -> Reading:
    """exact − strongest on a model affine in x: anything above 0 is an attack failure."""
    return Reading(exact - strongest, threshold)


def minimum_norm_gap(curve: Mapping[float, float], fixed: Iterable[tuple[float, float]], threshold: float
                     ) -> Reading:
    """The largest excess of a fixed-ε attack's error (ε, error) over the minimum-norm curve's error at the same ε:
    both bound the same robustness from above, so a curve well below an attack means the minimum-norm attack
    stopped short (or, were the curve the truth, the attack's number would be impossible): one of the two failed."""
    gaps = [error - curve[eps] for eps, error in fixed if eps in curve]
    return Reading(max(gaps, default=0.0), threshold)


def job_diagnostics(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, rows: list[dict],
                    fooled: Mapping[str, torch.Tensor], epsilons: Sequence[float], curve: Sequence[Mapping],
                    settings: Mapping[str, Any]) -> dict[str, Reading]:
    """Every check above that this job's evaluation can answer (the transfer check needs the other jobs:
    `transfer_checks`). Single-ε checks read `evaluation.diagnostics.eps`, clipped to [0, 1]."""
    limits = settings["diagnostics"]
    eps, clip = float(limits["eps"]), "0-1"
    confidence, predicted = predict(model, x)
    with torch.no_grad():
        logits = model(x[:100])
    classes, summed = int(logits.shape[1]), probabilities(model, logits).sum(dim=1)
    normalized = bool(torch.allclose(summed, torch.ones_like(summed), atol=1e-4))
    checks = {"chance_error": chance_error(float((predicted != y).float().mean()), classes, limits["chance_error"]),
              "chance_confidence": chance_confidence(float(confidence.mean()), classes, limits["chance_confidence"],
                                                     normalized),
              "zero_gradients": zero_gradients(model, x, y, limits["zero_gradients"]),
              "stochastic": stochastic_outputs(model, x, limits["stochastic"]),
              "probabilities": probability_outputs(model, x, limits["probabilities"]),
              "monotone_fgsm": monotone_in_eps([(r["eps"], r["error"]) for r in curve], limits["monotone"]),
              "unbounded": unbounded(model, x, y, int(limits["unbounded_steps"]), limits["unbounded"])}
    strongest, fgsm = error_of(rows, "strongest", clip, eps), error_of(rows, "fgsm", clip, eps)
    if strongest is None:
        return checks
    if fgsm is not None:
        checks["single_step_gap"] = single_step_gap(strongest, fgsm, limits["single_step_gap"])
    unattacked = error_of(rows, UNATTACKED, clip, eps)
    if unattacked is not None:
        checks["autoattack_unattacked"] = Reading(unattacked, limits["autoattack_unattacked"])
    square = [r["fooled_new"] for r in rows if r["evaluation"] == "autoattack:square" and r["clip"] == clip
              and abs(r["eps"] - eps) < 1e-9]
    if square:
        checks["black_box"] = black_box(square[0], len(x), limits["black_box"])
    apgd_steps = [a.get("steps", 100) for a in settings["attacks"].values() if a["_target_"].endswith("APGD")]
    checks["convergence"] = convergence(
        model, x, y, ~fooled[clip][list(epsilons).index(eps)], eps, (0.0, 1.0), 2 * max(apgd_steps, default=100),
        int(limits["convergence_sample"]), limits["convergence"])
    exact = error_of(rows, "exact", clip, eps)
    if exact is not None:
        checks["exact_gap"] = exact_gap(exact, strongest, limits["exact_gap"])
    if "minimum_norm_gap" in limits:
        checks.update(minimum_norm_checks(rows, settings["attacks"], clip, limits["minimum_norm_gap"]))
    return checks

def minimum_norm_checks(rows: list[dict], attacks: Mapping[str, Any], clip: str, threshold: float
                        ) -> dict[str, Reading]:
    """`minimum_norm_gap` at every ε: each fixed-ε attack's own rows (and the exact ones) against the curve of the
    minimum-norm attack (AutoAttack's rows and `strongest` are unions that hold the curve itself)."""
    names = [name for name, a in attacks.items() if a["_target_"].endswith("MinimumNorm")]
    if not names:
        return {}
    curve = {r["eps"]: r["error"] for r in rows if r["evaluation"] == names[0] and r["clip"] == clip}
    unions = {"strongest", *names, *(name for name, a in attacks.items() if a["_target_"].endswith("AutoAttack"))}
    fixed = [(r["eps"], r["error"]) for r in rows if r["clip"] == clip and r["evaluation"] not in unions
             and ":" not in r["evaluation"] and r["evaluation"] not in ("rubbish", "one_member")]
    return {"minimum_norm_gap": minimum_norm_gap(curve, fixed, threshold)}

def check_rows(job_id: str, checks: Mapping[str, Reading]) -> list[dict]:
    return [{"job_id": job_id, "check": name, "value": c.value, "threshold": c.threshold, "flag": c.flag}
            for name, c in checks.items()]

def transfer_checks(evaluations: pd.DataFrame, transfer: pd.DataFrame, clip: str, threshold: float
                    ) -> list[dict]:
    """Per target job: other jobs' FGSM examples against its own FGSM error, at every ε both tables have, with
    the transfer stage's clipping."""
    own = evaluations[(evaluations["evaluation"] == "fgsm") & (evaluations["clip"] == clip)]
    others = transfer[transfer["source"] != transfer["target"]]
    rows = []
    for job_id, group in own.groupby("job_id"):
        crafted = others[others["target"] == job_id]
        gaps = [transfer_beats_white_box(crafted[(crafted["eps"] - r.eps).abs() < 1e-9]["error"],
                                                     r.error, threshold)
                for r in group.itertuples() if r.eps > 0]
        gaps = [g for g in gaps if g.value != float("-inf")]
        if gaps:
            rows += check_rows(job_id, {"transfer": max(gaps, key=lambda g: g.value)})
    return rows
