"""The evaluation stage's time per job, split by attack: a softmax regression, a maxout net and an adversarially
trained maxout (AutoAttack then has survivors to attack), trained briefly on the embedded digits and evaluated as a
sweep's evaluation task does (conf/sweep.yaml `evaluation`: every attack, both clippings, AutoAttack on what the
others left standing, the exact rows, the diagnostics)."""
from __future__ import annotations

import time
from typing import Any

import pandas as pd
import torch
from omegaconf import OmegaConf

from benchmarks.workload import make_model, sweep_config, train


def autoattack_growth(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, limits: tuple[int, ...],
                      eps: float) -> dict[int, dict[str, float]]:
    """AutoAttack's seconds per component when it attacks `limit` survivors of FGSM, for each limit: how its cost
    grows with the examples left standing."""
    from pipeline.attacks import AutoAttack, fgsm_curve

    standing = fgsm_curve(model, x, y, [eps], clip=(0.0, 1.0)).wrong[0].logical_not()
    growth = {}
    for limit in limits:
        _, seconds = AutoAttack(limit=limit).after(model, x, y, eps, standing)
        growth[limit] = {**seconds, "attacked": min(limit, int(standing.sum()))}
    return growth


def curve_cost(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, settings: dict[str, Any]
               ) -> dict[str, float]:
    """Seconds of the evaluation stage's attacks and diagnostics for one job, side by side in one run: as before the
    minimum-norm attack (every attack at the reference ε, .25), and the curve as shipped (conf/sweep.yaml
    `evaluation.epsilons`: one FAB run and FGSM at every ε; the iterative attacks and AutoAttack at their own
    `epsilons`)."""
    from pipeline.evaluation.diagnostics import job_diagnostics
    from pipeline.evaluation.rows import evaluate_attacks

    before = {name: {k: v for k, v in a.items() if k != "epsilons"} for name, a in settings["attacks"].items()
              if not a["_target_"].endswith("MinimumNorm")}
    seconds = {}
    one_eps = [float(settings["diagnostics"]["eps"])]    # the reference check's ε, where every attack runs
    for label, attacks, epsilons in (("today", before, one_eps), ("curve", settings["attacks"], settings["epsilons"])):
        started = time.perf_counter()
        rows, fooled = evaluate_attacks(model, x, y, attacks, settings["clips"], epsilons, settings["batch_size"],
                                        settings["exact"])
        job_diagnostics(model, x, y, rows, fooled, epsilons, [], {**settings, "attacks": attacks})
        seconds[label] = time.perf_counter() - started
    return seconds


def bench_evaluation(examples: int, epochs: int = 2, limits: tuple[int, ...] = ()) -> dict[str, Any]:
    """{"per_model": {model: {attack: seconds (both clippings), "diagnostics": seconds, "total": seconds}}} on
    `examples` test digits, and AutoAttack's cost on the maxout by survivors attacked (`limits`, at ε = .05)."""
    from pipeline.attacks import fgsm_curve
    from pipeline.data import mnist5k
    from pipeline.regularizers import Adversarial
    from pipeline.evaluation.diagnostics import job_diagnostics
    from pipeline.evaluation.rows import evaluate_attacks
    from pipeline.stages.evaluate import attack_seconds

    settings = OmegaConf.to_container(sweep_config().evaluation, resolve=True)
    x, y = mnist5k()
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))   # the file is sorted by digit
    x, y = x[order], y[order]
    x_train, y_train, x_test, y_test = x[:4000], y[:4000], x[4000:4000 + examples], y[4000:4000 + examples]
    result, growth, curves = {}, {}, {}
    for name, regularizer in (("softmax", None), ("maxout", None), ("maxout, adversarially trained", Adversarial())):
        model = train(make_model(name.split(",")[0], torch.device("cpu")), x_train, y_train, epochs,
                      regularizer=regularizer)
        started = time.perf_counter()
        rows, fooled = evaluate_attacks(model, x_test, y_test, settings["attacks"], settings["clips"],
                                        settings["epsilons"], settings["batch_size"], settings["exact"])
        evaluated = time.perf_counter()
        curve = fgsm_curve(model, x_test, y_test, [0.0, 0.1, 0.25], clip=None).rows()
        job_diagnostics(model, x_test, y_test, rows, fooled, settings["epsilons"], curve, settings)
        times = attack_seconds(pd.DataFrame(rows).assign(job_id=name))
        result[name] = {**times, "others": evaluated - started - sum(times.values()),
                        "diagnostics": time.perf_counter() - evaluated, "total": time.perf_counter() - started}
        if name == "maxout" and limits:
            growth = autoattack_growth(model, x_test, y_test, limits, 0.05)
        curves[name] = curve_cost(model, x_test, y_test, settings)
    return {"examples": examples, "per_model": result, "autoattack_growth": growth, "curve_cost": curves}
