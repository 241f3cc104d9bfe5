"""The evaluation stage's time per job, split by attack: a softmax regression and a maxout net trained briefly on
the embedded digits, evaluated as a sweep's evaluation task does (conf/sweep.yaml `evaluation`: every attack,
both clippings, AutoAttack on what the others left standing, the exact rows, the diagnostics)."""
from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from benchmarks.sizes import ROOT


def trained(name: str, x: torch.Tensor, y: torch.Tensor, epochs: int) -> torch.nn.Module:
    from pipeline.models import Maxout, Softmax

    torch.manual_seed(0)
    model = {"softmax": Softmax, "maxout": Maxout}[name](x.shape[1:], 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    for _ in range(epochs):
        for index in torch.randperm(len(y)).split(100):
            optimizer.zero_grad()
            F.cross_entropy(model(x[index]), y[index]).backward()
            optimizer.step()
    return model.eval()


def bench_evaluation(examples: int, epochs: int = 2) -> dict[str, Any]:
    """{model: {attack: seconds (both clippings), "diagnostics": seconds, "total": seconds}} on `examples` test
    digits."""
    from pipeline.attacks import fgsm_curve
    from pipeline.data import mnist5k
    from pipeline.stages.evaluate import evaluate_attacks, job_diagnostics

    settings = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "sweep.yaml").evaluation)
    x, y = mnist5k()
    x_train, y_train, x_test, y_test = x[:4000], y[:4000], x[4000:4000 + examples], y[4000:4000 + examples]
    result = {}
    for name in ("softmax", "maxout"):
        model = trained(name, x_train, y_train, epochs)
        started = time.perf_counter()
        rows, fooled = evaluate_attacks(model, x_test, y_test, settings["attacks"], settings["clips"],
                                   settings["epsilons"], settings["batch_size"], settings["exact"])
        evaluated = time.perf_counter()
        curve = fgsm_curve(model, x_test, y_test, [0.0, 0.1, 0.25], clip=None).rows()
        job_diagnostics(model, x_test, y_test, rows, fooled, settings["epsilons"], curve, settings)
        times: dict[str, float] = {}
        for row in rows:
            if not math.isnan(row.get("seconds", math.nan)):    # each attack's time, once per clipping and ε
                times[row["evaluation"]] = times.get(row["evaluation"], 0.0) + row["seconds"] / len(settings["epsilons"])
        result[name] = {**times, "others": evaluated - started - sum(times.values()),
                        "diagnostics": time.perf_counter() - evaluated, "total": time.perf_counter() - started}
    return {"examples": examples, "per_model": result}
