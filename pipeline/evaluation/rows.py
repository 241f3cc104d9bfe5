"""One job's rows of evaluations.csv, beyond its own FGSM curve: the attacks an honest evaluation adds, the exact
worst case where there is one, rubbish inputs and, for ensembles, FGSM crafted on one member.

Rows of evaluations.csv: job_id, evaluation, clip, eps, error, confidence, confidence_wrong, clean_error,
fooled_new, seconds, where `evaluation` is
    <attack name>   each attack of the sweep's `evaluation.attacks` (FGSM with true or predicted labels,
                    random-start FGSM, PGD, APGD-CE, AutoAttack) at each of `evaluation.epsilons`, for each of
                    `evaluation.clips` ("none": the paper's unclipped attack; "0-1": clipped to the pixel range;
                    AutoAttack is clipped only; an attack with its own `epsilons` only at those). In the configured
                    order; `fooled_new`: the examples it fooled that the attacks before it did not; `seconds`: its
                    time for every ε of that clipping
    minimum_norm    (pipeline.attacks.MinimumNorm, clipped only) one run gives each example's smallest fooling ε,
                    hence its error at every ε: the curve; `strongest` takes it in like any attack
    minimum_norm:median_eps   its `eps` the smallest ε that fools at least half the test set (inf: none found
                    that does; in pixel units, comparable across data sets), its error the share fooled there
    autoattack:<component>   AutoAttack's components (apgd-ce, apgd-t, fab-t, square in `standard`), in its own
                    order, run on the examples the attacks before it left standing (at most its `limit`): each
                    row's `fooled_new` is what that component added, its error the share fooled so far, its
                    `seconds` that component's own time; the `autoattack` row's error is therefore the union of
                    every attack up to it, not AutoAttack alone
    strongest       per clipping and ε: an example counts as fooled when any of those attacks fooled it (the
                    per-example union; at least the largest of their error rates); no confidence
    exact           models affine in x (`affine = True`: softmax, logistic regression): the closed-form worst
                    case (pipeline/attacks/exact.py); `strongest` below it is an attack failure
    rubbish         `evaluation.rubbish` inputs drawn from N(0, I) (the paper's Appendix A): error is the share
                    the model gives more than 0.5 probability on some class, confidence their mean confidence
    one_member      ensembles only: FGSM crafted on the first member and scored on the ensemble, with the job's
                    own attack clipping (compare it with the job's own FGSM error)
Every error is scored against the true labels.
"""
from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import torch
from omegaconf import OmegaConf

from pipeline.attacks import AutoAttack, Clip, Exact, MinimumNorm, as_clip, is_affine, predict, transfer_rows
from pipeline.clipping import clip_name
from pipeline.config import instantiate

COLUMNS = ["job_id", "evaluation", "clip", "eps", "error", "confidence", "confidence_wrong", "clean_error",
           "fooled_new", "seconds"]
NAN = float("nan")
UNATTACKED = "autoattack:unattacked"   # the share of examples left standing that AutoAttack's `limit` skipped
MEDIAN_EPS = "median_eps"              # `<minimum-norm attack>:median_eps`: the ε that fools half the test set


def ordered_rows(name: str, rows: list[dict], wrong: torch.Tensor, before: torch.Tensor) -> list[dict]:
    """An attack's rows with `fooled_new`: how many examples it fooled that the attacks before it did not."""
    return [{"evaluation": name, **row, "fooled_new": int(n)} for row, n in zip(rows, (wrong & ~before).sum(dim=1))]

def autoattack_rows(attack: AutoAttack, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, clip: str,
                    epsilons: Sequence[float], before: torch.Tensor, foolable: torch.Tensor
                    ) -> tuple[list[dict], torch.Tensor]:
    """AutoAttack on what the attacks before it left standing and can be fooled at all (`foolable`, from the exact
    worst case where there is one), per ε: one row per component (AutoAttack's order); errors count the examples
    fooled so far (those attacks', then AutoAttack's)."""
    rows, wrong, seconds = [], before.clone(), {}
    for k, eps in enumerate(epsilons):
        standing = ~before[k] & foolable[k]
        fooled_by, took = attack.after(model, x, y, eps, standing)
        for component, fooled in fooled_by.items():
            wrong[k] |= fooled
            seconds[component] = seconds.get(component, 0.0) + took[component]
            rows.append({"evaluation": f"autoattack:{component}", "clip": clip, "eps": eps,
                         "error": float(wrong[k].float().mean()), "confidence": NAN, "confidence_wrong": NAN,
                         "fooled_new": int(fooled.sum())})
        # Examples beyond the attack's `limit` were never attacked by it: the error is a lower bound by this share
        # (the `autoattack_unattacked` diagnostic flags it).
        rows.append({"evaluation": UNATTACKED, "clip": clip, "eps": eps, "confidence": NAN, "confidence_wrong": NAN,
                     "error": attack.unattacked(standing) / len(x), "fooled_new": NAN, "seconds": NAN})
    for row in rows:    # a component's time at every ε, as the attacks' rows have theirs
        if "seconds" not in row:
            row["seconds"] = seconds[row["evaluation"].split(":")[1]]
    return rows, wrong

def median_row(name: str, clip: str, norms: torch.Tensor) -> dict:
    """The smallest ε at which at least half the examples are fooled (the ⌈N/2⌉-th smallest fooling ε)."""
    eps = float(norms.kthvalue((len(norms) + 1) // 2).values)
    return {"evaluation": f"{name}:{MEDIAN_EPS}", "clip": clip, "eps": eps,
            "error": float((norms <= eps).float().mean()), "confidence": NAN, "confidence_wrong": NAN,
            "fooled_new": NAN, "seconds": NAN}

def attack_curve(attack: Any, name: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, clip: str,
                 epsilons: Sequence[float], batch_size: int) -> tuple[list[dict], torch.Tensor]:
    """One attack's rows at `epsilons` and which examples [K, N] it fooled; a minimum-norm attack adds its
    median row (from the same run)."""
    if isinstance(attack, MinimumNorm):
        adv, norms = attack.norms(model, x, y, batch_size)
        curve, extra = attack.curve_from(model, x, y, epsilons, adv, norms), [median_row(name, clip, norms)]
    else:
        curve, extra = attack.curve(model, x, y, list(epsilons), batch_size=batch_size), []
    return [{"clip": clip, **row} for row in curve.rows()] + extra, curve.wrong

def chosen_epsilons(attack_config: Mapping[str, Any], epsilons: Sequence[float]) -> list[int]:
    """Indices into `epsilons` where the attack runs: those of its own `epsilons` the evaluation asks for; every ε
    when it has none of its own (null or absent) or the evaluation asks for none of them (never dropped)."""
    own = attack_config.get("epsilons") or []
    at = [k for k, eps in enumerate(epsilons) if any(abs(eps - e) < 1e-9 for e in own)]
    return at or list(range(len(epsilons)))

def attack_rows(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: Mapping[str, Any],
                clips: Sequence[Sequence[float] | None], epsilons: Sequence[float], batch_size: int,
                exact: bool = False, job_id: str = "") -> list[dict]:
    """The rows of `evaluate_attacks`."""
    return evaluate_attacks(model, x, y, attacks, clips, epsilons, batch_size, exact, job_id)[0]

def evaluate_attacks(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: Mapping[str, Any],
                     clips: Sequence[Sequence[float] | None], epsilons: Sequence[float], batch_size: int,
                     exact: bool = False, job_id: str = "") -> tuple[list[dict], dict[str, torch.Tensor]]:
    """Per clipping, each attack (a conf/attack-style config) at every ε, in the configured order, each counting
    the examples it fooled that the ones before it did not; then `strongest`, and `exact` for an affine model
    (computed first: AutoAttack skips the examples it proves robust). Returns the rows and, per clipping, which
    examples [K, N] some attack fooled. Each (job, attack, ε, clipping) draws from its own random stream, so an
    attack's error does not depend on the other ε, attacks or jobs evaluated (the `fooled_new` counts and
    AutoAttack's rows do: they are about the attacks before it)."""
    rows, fooled = [], {}
    for clip in clips:
        name_of_clip, before = clip_name(clip), torch.zeros(len(epsilons), len(x), dtype=torch.bool, device=x.device)
        exact_rows, foolable = [], torch.ones_like(before)
        if exact and is_affine(model):
            curve = Exact(clip=clip).curve(model, x, y, list(epsilons), batch_size=batch_size)
            exact_rows, foolable = [{"evaluation": "exact", "clip": name_of_clip, **row, "fooled_new": NAN}
                                    for row in curve.rows()], curve.wrong
        for name, attack_config in attacks.items():
            at = chosen_epsilons(attack_config, epsilons)
            attack_config = {key: value for key, value in attack_config.items() if key != "epsilons"}
            attack = instantiate(OmegaConf.create(attack_config), f"evaluation.attacks.{name}",
                                 clip=list(clip) if clip is not None else None)
            if not attack.accepts(as_clip(clip)):
                continue
            attack.stream = (job_id, name)
            started, first = time.perf_counter(), len(rows)
            its_epsilons, wrong = [epsilons[k] for k in at], torch.zeros_like(before)
            if isinstance(attack, AutoAttack):
                component_rows, wrong[at] = autoattack_rows(attack, model, x, y, name_of_clip, its_epsilons,
                                                            before[at], foolable[at])
                rows += component_rows
                rows += ordered_rows(name, [{"clip": name_of_clip, "eps": e, "error": float(w.float().mean()),
                                             "confidence": NAN, "confidence_wrong": NAN}
                                            for e, w in zip(its_epsilons, wrong[at])], wrong[at], before[at])
            else:
                curve_rows, wrong[at] = attack_curve(attack, name, model, x, y, name_of_clip, its_epsilons,
                                                     batch_size)
                rows += ordered_rows(name, curve_rows[:len(at)], wrong[at], before[at]) + curve_rows[len(at):]
            for row in rows[first:]:        # the attack's time at every ε of this clipping, on its rows
                row.setdefault("seconds", time.perf_counter() - started)
            before = before | wrong
        fooled[name_of_clip] = before
        rows += [{"evaluation": "strongest", "clip": name_of_clip, "eps": eps, "error": float(wrong.float().mean()),
                  "confidence": NAN, "confidence_wrong": NAN, "fooled_new": NAN}
                 for eps, wrong in zip(epsilons, before)] + exact_rows
    return rows, fooled

def rubbish_row(model: torch.nn.Module, input_shape: Sequence[int], count: int, batch_size: int,
                seed: int = 0) -> dict:
    """The paper's rubbish class: how often N(0, I) inputs get more than 0.5 probability on some class."""
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    confidences = []
    for start in range(0, count, batch_size):
        noise = torch.randn((min(batch_size, count - start), *input_shape), generator=generator)
        confidences.append(predict(model, noise.to(device))[0])
    confidence = torch.cat(confidences)
    return {"evaluation": "rubbish", "clip": "none", "eps": float("nan"),
            "error": float((confidence > 0.5).float().mean()),
            "confidence": float(confidence.mean()), "confidence_wrong": float(confidence.mean())}

def one_member_rows(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epsilons: Sequence[float],
                    clip: Clip, batch_size: int) -> list[dict]:
    """FGSM crafted on an ensemble's first member and scored on the whole ensemble (the paper: 87.9%)."""

    rows, _ = transfer_rows("member", model.members[0], {"ensemble": model}, x, y, epsilons, clip,
                            batch_size=batch_size)
    return [{"evaluation": "one_member", "clip": clip_name(clip), "eps": r["eps"], "error": r["error"],
             "confidence": r["confidence"], "confidence_wrong": r["confidence_wrong"]} for r in rows]

def error_of(rows: list[dict], evaluation: str, clip: str, eps: float) -> float | None:
    found = [r["error"] for r in rows if r["evaluation"] == evaluation and r["clip"] == clip
             and abs(r["eps"] - eps) < 1e-9]
    return found[0] if found else None
