"""Extra evaluations of every complete job, beyond its own FGSM curve: the attacks an honest evaluation adds, the
exact worst case where there is one, the diagnostics that say whether the attacks worked, rubbish inputs and, for
ensembles, FGSM crafted on one member.

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
Every error is scored against the true labels. diagnostics.csv: job_id, check, value, threshold, flag, one row per
job and check of pipeline/diagnostics.py (`evaluation.diagnostics`). One task per job (pipeline.cluster.tasks; on
a GPU when the task has one).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from pipeline import diagnostics, store
from pipeline.adapter import probabilities
from pipeline.attacks import (AutoAttack, Clip, Exact, MinimumNorm, as_clip, clean_scores, is_affine, predict,
                              transfer_rows)
from pipeline.clipping import clip_name
from pipeline.config import instantiate
from pipeline.data import test_set
from pipeline.devices import full_float32, task_device
from pipeline.planned_job import Job
from pipeline.provenance import EVALUATION_ENTRY, fingerprint
from pipeline.stages.sweep_dir import (DIAGNOSTICS, EVALUATIONS, TRANSFER, checkpoints, complete_jobs, job_dir, say,
                                       log_stage, part_key, read_table, stage_failures, table_from_parts)

COLUMNS = ["job_id", "evaluation", "clip", "eps", "error", "confidence", "confidence_wrong", "clean_error",
           "fooled_new", "seconds"]
DIAGNOSTICS_COLUMNS = ["job_id", "check", "value", "threshold", "flag"]
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


def job_diagnostics(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, rows: list[dict],
                    fooled: Mapping[str, torch.Tensor], epsilons: Sequence[float], curve: Sequence[Mapping],
                    settings: Mapping[str, Any]) -> dict[str, diagnostics.Reading]:
    """Every check of pipeline/diagnostics.py that this job's evaluation can answer (the transfer check needs the
    other jobs: `transfer_checks`). Single-ε checks read `diagnostics.eps`, clipped to [0, 1]."""
    limits = settings["diagnostics"]
    eps, clip, generator = float(limits["eps"]), "0-1", torch.Generator().manual_seed(0)
    confidence, predicted = predict(model, x)
    with torch.no_grad():
        logits = model(x[:100])
    classes, summed = int(logits.shape[1]), probabilities(model, logits).sum(dim=1)
    normalized = bool(torch.allclose(summed, torch.ones_like(summed), atol=1e-4))
    checks = {"chance_error": diagnostics.chance_error(float((predicted != y).float().mean()), classes,
                                                       limits["chance_error"]),
              "chance_confidence": diagnostics.chance_confidence(float(confidence.mean()), classes,
                                                                 limits["chance_confidence"], normalized),
              "zero_gradients": diagnostics.zero_gradients(model, x, y, limits["zero_gradients"]),
              "stochastic": diagnostics.stochastic_outputs(model, x, limits["stochastic"]),
              "probabilities": diagnostics.probability_outputs(model, x, limits["probabilities"]),
              "monotone_fgsm": diagnostics.monotone_in_eps([(r["eps"], r["error"]) for r in curve],
                                                           limits["monotone"]),
              "unbounded": diagnostics.unbounded(model, x, y, int(limits["unbounded_steps"]), limits["unbounded"],
                                                 generator)}
    strongest, fgsm = error_of(rows, "strongest", clip, eps), error_of(rows, "fgsm", clip, eps)
    if strongest is None:
        return checks
    if fgsm is not None:
        checks["single_step_gap"] = diagnostics.single_step_gap(strongest, fgsm, limits["single_step_gap"])
    unattacked = error_of(rows, UNATTACKED, clip, eps)
    if unattacked is not None:
        checks["autoattack_unattacked"] = diagnostics.Reading(unattacked, limits["autoattack_unattacked"])
    square = [r["fooled_new"] for r in rows if r["evaluation"] == "autoattack:square" and r["clip"] == clip
              and abs(r["eps"] - eps) < 1e-9]
    if square:
        checks["black_box"] = diagnostics.black_box(square[0], len(x), limits["black_box"])
    apgd_steps = [a.get("steps", 100) for a in settings["attacks"].values() if a["_target_"].endswith("APGD")]
    checks["convergence"] = diagnostics.convergence(
        model, x, y, ~fooled[clip][list(epsilons).index(eps)], eps, (0.0, 1.0), 2 * max(apgd_steps, default=100),
        int(limits["convergence_sample"]), limits["convergence"], generator)
    exact = error_of(rows, "exact", clip, eps)
    if exact is not None:
        checks["exact_gap"] = diagnostics.exact_gap(exact, strongest, limits["exact_gap"])
    if "minimum_norm_gap" in limits:
        checks.update(minimum_norm_checks(rows, settings["attacks"], clip, limits["minimum_norm_gap"]))
    return checks


def minimum_norm_checks(rows: list[dict], attacks: Mapping[str, Any], clip: str, threshold: float
                        ) -> dict[str, diagnostics.Reading]:
    """`minimum_norm_gap` at every ε: each fixed-ε attack's own rows (and the exact ones) against the curve of the
    minimum-norm attack (AutoAttack's rows and `strongest` are unions that hold the curve itself)."""
    names = [name for name, a in attacks.items() if a["_target_"].endswith("MinimumNorm")]
    if not names:
        return {}
    curve = {r["eps"]: r["error"] for r in rows if r["evaluation"] == names[0] and r["clip"] == clip}
    unions = {"strongest", *names, *(name for name, a in attacks.items() if a["_target_"].endswith("AutoAttack"))}
    fixed = [(r["eps"], r["error"]) for r in rows if r["clip"] == clip and r["evaluation"] not in unions
             and ":" not in r["evaluation"] and r["evaluation"] not in ("rubbish", "one_member")]
    return {"minimum_norm_gap": diagnostics.minimum_norm_gap(curve, fixed, threshold)}


def check_rows(job_id: str, checks: Mapping[str, diagnostics.Reading]) -> list[dict]:
    return [{"job_id": job_id, "check": name, "value": c.value, "threshold": c.threshold, "flag": c.flag}
            for name, c in checks.items()]


@full_float32()   # float32 exactly, as on the CPU (no TF32)
def evaluate_job(job_id: str, job_dir: str, settings: Mapping[str, Any]) -> dict[str, list[dict]]:
    """Every evaluation of one job (the body of one task): {"rows": [...]}, its evaluations.csv rows, then its
    diagnostics.csv rows (those with a `check`), and the seconds each attack took ("seconds")."""

    config = store.read_config(Path(job_dir))
    device = task_device()   # the GPU Ray assigned this task, else the CPU
    model = store.load_model(job_dir, device)
    x, y = (t.to(device) for t in test_set(config, Path(job_dir) / store.CONFIG))
    batch_size = int(settings["batch_size"])
    epsilons = [float(e) for e in settings["epsilons"]]
    rows, fooled = evaluate_attacks(model, x, y, settings["attacks"], settings["clips"], epsilons, batch_size,
                                    bool(settings.get("exact", True)), job_id)
    if settings.get("rubbish"):
        rows.append(rubbish_row(model, x.shape[1:], int(settings["rubbish"]), batch_size))
    if hasattr(model, "members"):
        rows += one_member_rows(model, x, y, epsilons, as_clip(config["attack"].get("clip")), batch_size)
    clean_error = clean_scores(model, x, y, batch_size)[0]
    checks = []
    if settings.get("diagnostics"):
        curve = store.read_metrics(Path(job_dir))["curve"]
        checks = check_rows(job_id, job_diagnostics(model, x, y, rows, fooled, epsilons, curve, settings))
    return {"rows": [{"job_id": job_id, **row, "clean_error": clean_error} for row in rows] + checks}


def transfer_checks(evaluations: pd.DataFrame, transfer: pd.DataFrame, clip: str, threshold: float
                    ) -> list[dict]:
    """Per target job: other jobs' FGSM examples against its own FGSM error, at every ε both tables have, with
    the transfer stage's clipping."""
    own = evaluations[(evaluations["evaluation"] == "fgsm") & (evaluations["clip"] == clip)]
    others = transfer[transfer["source"] != transfer["target"]]
    rows = []
    for job_id, group in own.groupby("job_id"):
        crafted = others[others["target"] == job_id]
        gaps = [diagnostics.transfer_beats_white_box(crafted[(crafted["eps"] - r.eps).abs() < 1e-9]["error"],
                                                     r.error, threshold)
                for r in group.itertuples() if r.eps > 0]
        gaps = [g for g in gaps if g.value != float("-inf")]
        if gaps:
            rows += check_rows(job_id, {"transfer": max(gaps, key=lambda g: g.value)})
    return rows


def attack_seconds(evaluations: pd.DataFrame) -> dict[str, float]:
    """Seconds per attack in evaluation order, AutoAttack by component (its own row would count them twice). A
    row's `seconds` covers every ε of its clipping, so each (job, attack, clipping) counts once."""
    timed = evaluations[evaluations["seconds"].notna() & (evaluations["evaluation"] != "autoattack")]
    once = timed.drop_duplicates(["job_id", "evaluation", "clip"])
    return once.groupby("evaluation", sort=False)["seconds"].sum().to_dict()


def attack_cost(evaluations: pd.DataFrame) -> str:
    """'fgsm 9 s, pgd 72 s, …': `attack_seconds` as one line."""
    return ", ".join(f"{name} {seconds:.0f} s" for name, seconds in attack_seconds(evaluations).items())


def evaluation_stage(cfg: DictConfig, sweep_dir: Path, jobs: list[Job], force: bool = False
                     ) -> tuple[pd.DataFrame, dict[str, str]]:
    """evaluations.csv and diagnostics.csv over the complete jobs, one part per job, recomputed only where the
    job's checkpoint, the settings or this stage's code changed. Its W&B run holds both tables. Returns the
    evaluations and the failed tasks' reasons."""
    metrics = complete_jobs(sweep_dir, jobs)
    settings = OmegaConf.to_container(cfg.evaluation, resolve=True)
    gpus = settings.pop("gpu", 0)
    settings.pop("enabled", None)
    calls = {}
    for job in jobs:
        if job.id in metrics:
            inputs = {"job": checkpoints(sweep_dir, [job.id], metrics), "code": fingerprint(EVALUATION_ENTRY),
                      **settings}
            calls[part_key(inputs)] = (job.id, str(job_dir(sweep_dir, job)), settings)
    parts, outcome = table_from_parts(sweep_dir, "evaluation", evaluate_job, calls, COLUMNS + DIAGNOSTICS_COLUMNS[1:],
                                      gpus=gpus, retries=cfg.retries, force=force)
    stage_failures("evaluation", outcome)
    is_check = parts["check"].notna()
    table, checks = parts.loc[~is_check, COLUMNS], parts.loc[is_check, DIAGNOSTICS_COLUMNS]
    transfer = read_table(sweep_dir / TRANSFER)
    if settings.get("diagnostics") and cfg.transfer.enabled and len(transfer):
        extra = transfer_checks(table, transfer, clip_name(cfg.transfer.clip), settings["diagnostics"]["transfer"])
        checks = pd.concat([checks, pd.DataFrame(extra, columns=DIAGNOSTICS_COLUMNS)], ignore_index=True)
    checks = checks.astype({"flag": bool}).sort_values(["job_id", "check"], kind="stable")
    store.atomic_write(sweep_dir / EVALUATIONS, lambda tmp: table.to_csv(tmp, index=False))
    store.atomic_write(sweep_dir / DIAGNOSTICS, lambda tmp: checks.to_csv(tmp, index=False))
    log_stage(sweep_dir, jobs, "evaluation", {"evaluations": table, "diagnostics": checks})
    if len(table):   # the clocks of the tasks that ran now or before, kept out of the report (it stays reproducible)
        say(f"evaluation seconds by attack, over every job, clipping and ε: {attack_cost(table)}")
    return table, outcome.failed
