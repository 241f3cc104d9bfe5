"""The curve from one minimum-norm attack (pipeline/attacks/minimum_norm.py, FAB): on softmax regression, where
each example's exact smallest fooling ε is known, it never claims less than the exact ε and comes close; its curve
never rises above the exact one nor falls as ε grows; a number at ε = .25 does not move with other ε; the
library's points are checked; the minimum_norm_gap diagnostic fires when the curve falls below a fixed-ε attack."""
from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from pipeline.attacks import Exact, MinimumNorm, attack_mode
from pipeline.attacks.exact import affine_weights
from pipeline.config import CONF_DIR
from pipeline.evaluation.diagnostics import minimum_norm_checks
from pipeline.evaluation.rows import evaluate_attacks

EPSILONS = [0.02, 0.05, 0.08, 0.1, 0.15, 0.25]
N = 150


@pytest.fixture(scope="module")
def softmax(softmax_model):
    model, x, y = softmax_model
    return model, x[:N], y[:N]


def exact_smallest(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, iterations: int = 40) -> torch.Tensor:
    """Each example's smallest fooling ε in the clipped box, by bisection on the closed form (pipeline/attacks/
    exact.py: per wrong class, every pixel at the bound that raises z_k − z_y, scored by the model's argmax)."""
    towards = (lambda w: w[None] - w[y][:, None])(affine_weights(model, x))      # [N, C, *shape]
    shape = (-1,) + (1,) * x.ndim

    def fooled(eps: torch.Tensor) -> torch.Tensor:
        e = eps.view(shape)
        hi, lo = torch.minimum(e, 1 - x[:, None]), torch.maximum(-e, -x[:, None])
        points = x[:, None] + torch.where(towards > 0, hi, torch.where(towards < 0, lo, 0.0))
        with attack_mode(model), torch.no_grad():
            predicted = model(points.flatten(0, 1)).argmax(dim=1).view(len(x), -1)
        return (predicted != y[:, None]).any(dim=1)

    low, high = torch.zeros(len(x)), torch.ones(len(x))
    for _ in range(iterations):
        middle = (low + high) / 2
        hit = fooled(middle)
        high, low = torch.where(hit, middle, high), torch.where(hit, low, middle)
    return torch.where(fooled(torch.zeros(len(x))), 0.0, high)


def attacks(autoattack_epsilons: list[float] | None = None) -> dict:
    """conf/sweep.yaml's FGSM and minimum-norm attack, and AutoAttack's APGD-CE alone (test time)."""
    shipped = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "sweep.yaml").evaluation.attacks)
    autoattack = {**shipped["autoattack"], "components": ["apgd-ce"], "epsilons": autoattack_epsilons}
    return {"fgsm": shipped["fgsm"], "minimum_norm": shipped["minimum_norm"], "autoattack": autoattack}


def test_on_softmax_each_eps_is_at_least_the_exact_one_and_close(softmax):
    model, x, y = softmax
    exact = exact_smallest(model, x, y)
    adv, norms = MinimumNorm().norms(model, x, y)
    assert torch.isfinite(norms).all()
    assert (norms >= exact - 1e-5).all()                  # no attack beats the exact answer
    assert float((norms - exact).mean()) < 2e-3, (norms - exact).abs().max()
    curve = MinimumNorm.curve_from(model, x, y, EPSILONS, adv, norms).error
    truth = Exact().curve(model, x, y, EPSILONS).error
    assert (curve <= truth + 1e-6).all() and (truth - curve).max() <= 0.02, (curve, truth)
    assert (curve.diff() >= 0).all()                       # never falls as ε grows


def test_each_returned_point_is_checked_not_trusted(softmax, monkeypatch):
    """A library that returns the inputs unchanged fools nothing: every correctly classified example gets inf."""
    from pyautoattack.fab_pt import FABAttack_PT

    model, x, y = softmax
    monkeypatch.setattr(FABAttack_PT, "attack_single_run", lambda self, x, y, **_: x.clone())
    _, norms = MinimumNorm().norms(model, x, y)
    right = model(x).argmax(dim=1) == y
    assert torch.isinf(norms[right]).all() and (norms[~right] == 0).all()


def test_a_number_at_one_eps_does_not_move_with_other_eps(softmax):
    """The minimum-norm rows, the median smallest ε, AutoAttack's and `strongest` at ε = .25 are identical with
    evaluation.epsilons=[.25] and with three ε; the curve has a value at every ε and never falls."""
    model, x, y = softmax

    def at_025(epsilons: list[float]) -> dict:
        rows, _ = evaluate_attacks(model, x, y, attacks([0.25]), [[0.0, 1.0]], epsilons, 100, job_id="job")
        return {r["evaluation"]: (r["eps"], r["error"]) for r in rows
                if r["eps"] == 0.25 or r["evaluation"].endswith(":median_eps")}

    alone, three = at_025([0.25]), at_025([0.05, 0.25, 0.3])
    assert alone == three and {"minimum_norm", "minimum_norm:median_eps", "autoattack", "strongest"} <= set(alone)
    rows, _ = evaluate_attacks(model, x, y, attacks(), [[0.0, 1.0]], EPSILONS, 100)
    strongest = [r["error"] for r in rows if r["evaluation"] == "strongest"]
    assert len(strongest) == len(EPSILONS) and strongest == sorted(strongest)
    assert len([r for r in rows if r["evaluation"] == "autoattack"]) == len(EPSILONS)   # epsilons=null: every ε


def test_the_diagnostic_fires_when_the_curve_falls_below_a_fixed_eps_attack(softmax):
    model, x, y = softmax
    config = attacks()
    rows, _ = evaluate_attacks(model, x, y, config, [[0.0, 1.0]], EPSILONS, 100, exact=True)
    threshold = OmegaConf.load(CONF_DIR / "sweep.yaml").evaluation.diagnostics.minimum_norm_gap
    working = minimum_norm_checks(rows, config, "0-1", threshold)["minimum_norm_gap"]
    assert not working.flag
    failed = [{**r, "error": r["error"] - 0.05} if r["evaluation"] == "minimum_norm" and r["eps"] == 0.1 else r
              for r in rows]                            # a curve that stopped short at one ε
    check = minimum_norm_checks(failed, config, "0-1", threshold)["minimum_norm_gap"]
    assert check.flag and check.value == pytest.approx(working.value + 0.05, abs=0.05)


def test_an_attack_whose_eps_the_evaluation_does_not_ask_for_runs_at_every_eps(softmax):
    """AutoAttack's `epsilons: [0.25]` restricts it where the evaluation asks for 0.25; at [0.02, 0.05] it is never
    dropped."""
    model, x, y = softmax
    rows, _ = evaluate_attacks(model, x[:20], y[:20], attacks([0.25]), [[0.0, 1.0]], [0.02, 0.05], 100)
    assert [r["eps"] for r in rows if r["evaluation"] == "autoattack"] == [0.02, 0.05]
