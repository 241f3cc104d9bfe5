"""Did the model learn? A model whose clean error or mean confidence is near chance is flagged by the evaluation's
diagnostics (chance_error, chance_confidence; thresholds in conf/sweep.yaml), and its numbers under attack carry ⚑
in the report: on 10 digit classes a conv net after 20 SGD steps is 77% wrong at 11% confidence, and every attack
"fools" it."""
from __future__ import annotations

import re
from typing import Any

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from pipeline.attacks import fgsm_curve
from pipeline.config import CONF_DIR
from pipeline.attacks import clean_scores
from pipeline.models import Conv
from pipeline.paper.results import Results
from pipeline.report.models import models_section
from pipeline.report.settings import CHANCE
from pipeline.report.sweep_report import attack_table
from pipeline.report.document import Document
from pipeline.evaluation.diagnostics import check_rows, job_diagnostics
from pipeline.evaluation.rows import evaluate_attacks

EPS = 0.25
EPSILONS = [0.0, 0.1, EPS]


@pytest.fixture(scope="module")
def undertrained(mnist_splits) -> torch.nn.Module:
    """A small conv net after 20 SGD steps of 100 digits at lr .1 (the issue's optimizer, far fewer steps)."""
    (x, y), _ = mnist_splits
    torch.manual_seed(0)
    model = Conv(x.shape[1:], 10, channels=(8, 16), hidden=64)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for index in torch.randperm(len(y), generator=torch.Generator().manual_seed(0)).split(100)[:20]:
        optimizer.zero_grad()
        F.cross_entropy(model(x[index]), y[index]).backward()
        optimizer.step()
    return model.eval()


def settings() -> dict[str, Any]:
    """conf/sweep.yaml's evaluation with its shipped thresholds; FGSM and PGD only, clipped (test time)."""
    evaluation = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "sweep.yaml").evaluation)
    evaluation["attacks"] = {name: evaluation["attacks"][name] for name in ("fgsm", "pgd")}
    return {**evaluation, "epsilons": EPSILONS, "clips": [[0.0, 1.0]]}


def evaluated(job_id: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, pd.DataFrame]:
    """One job's summary.csv, evaluations.csv and diagnostics.csv rows, as the sweep's stages write them."""
    config = settings()
    rows, fooled = evaluate_attacks(model, x, y, config["attacks"], config["clips"], EPSILONS, 1000, job_id=job_id)
    curve = fgsm_curve(model, x, y, EPSILONS).rows()
    checks = job_diagnostics(model, x, y, rows, fooled, EPSILONS, curve, config)
    error, confidence = clean_scores(model, x, y, 1000)
    return {"summary": pd.DataFrame([{"job_id": job_id, "setting": job_id, **row, "clean_error": error,
                                      "clean_confidence": confidence} for row in curve]),
            "evaluations": pd.DataFrame([{"job_id": job_id, **row, "clean_error": error} for row in rows]),
            "diagnostics": pd.DataFrame(check_rows(job_id, checks))}


@pytest.fixture(scope="module")
def sweep(undertrained, softmax_model) -> Results:
    """The undertrained conv net and a trained softmax regression evaluated on the same 300 test digits."""
    softmax, x, y = softmax_model
    parts = [evaluated("conv", undertrained, x[:300], y[:300]), evaluated("softmax", softmax, x[:300], y[:300])]
    tables = {name: pd.concat([p[name] for p in parts], ignore_index=True) for name in parts[0]}
    return Results(pd.DataFrame(columns=["job_id", "seed", "data", "config"]), tables["summary"],
                   evaluations=tables["evaluations"], diagnostics=tables["diagnostics"])


def flagged(results: Results, job_id: str) -> set[str]:
    checks = results.diagnostics
    return set(checks[(checks["job_id"] == job_id) & checks["flag"]]["check"])


def test_an_undertrained_model_is_flagged_and_a_trained_one_is_not(sweep):
    checks = sweep.diagnostics.set_index(["job_id", "check"])
    assert checks.loc[("conv", "chance_confidence"), "value"] > 0.9      # outputs near uniform
    assert set(CHANCE) <= flagged(sweep, "conv")
    assert not set(CHANCE) & flagged(sweep, "softmax")
    assert checks.loc[("softmax", "chance_error"), "value"] < 0.25


def test_its_numbers_under_attack_carry_the_flag_in_the_report(sweep):
    doc = Document("report")
    models_section(doc, sweep)
    side_by_side = doc.markdown()
    rows = {line.split("|")[1].strip(): line for line in side_by_side.splitlines() if line.startswith("| conv")
            or line.startswith("| softmax")}
    conv, softmax = (rows[name].split("|")[2:-1] for name in ("conv", "softmax"))
    header = [cell.strip() for cell in side_by_side.split("\n| model")[1].splitlines()[0].split("|")[1:-1]]
    under_attack = [i for i, name in enumerate(header) if re.search(r"ε=0\.\d", name)]    # FGSM and strongest, ε > 0
    assert len(under_attack) == 4, header
    assert all(conv[i].strip().endswith("⚑") for i in under_attack), conv
    assert not any("⚑" in softmax[i] for i in under_attack), softmax
    assert "chance_confidence" in conv[header.index("flags ⚑")] and "chance" not in softmax[header.index("flags ⚑")]
    assert not conv[header.index("clean error")].strip().endswith("⚑")        # the clean numbers are not attacked
    table = attack_table(sweep.summary, sweep.evaluations, "0-1", EPS, ["conv"]).set_index("setting")
    assert table.loc["conv", "pgd"].endswith("⚑") and not table.loc["softmax", "pgd"].endswith("⚑")


def test_a_model_unconfident_by_design_is_judged_by_its_error_alone(mnist_splits):
    """The paper's RBF: per-class probabilities that do not sum to 1, low far from its data; trained, it is right
    most of the time at a low confidence, and that is no sign of chance."""
    from pipeline.evaluation.diagnostics import chance_confidence
    from pipeline.models import RBF
    from pipeline.regularizers import Regularizer
    from tests.support.training import train_sgd

    (x, y), (x_test, y_test) = mnist_splits

    def build() -> RBF:   # centers at the class means, as a job starts it
        model = RBF(x.shape[1:], 10)
        model.initialize(x[:1000], y[:1000])
        return model

    rbf = train_sgd(build, x[:1000], y[:1000], Regularizer(), epochs=3)
    checks = evaluated("rbf", rbf, x_test[:200], y_test[:200])["diagnostics"].set_index("check")
    assert checks.loc["chance_error", "value"] < 0.5 and not checks.loc["chance_error", "flag"]
    assert pd.isna(checks.loc["chance_confidence", "value"]) and not checks.loc["chance_confidence", "flag"]
    assert chance_confidence(0.1, 10, 0.8).flag and not chance_confidence(0.1, 10, 0.8, normalized=False).flag
