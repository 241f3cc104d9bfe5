"""A number in the benchmark does not move when something else is evaluated beside it: each (job, attack, ε,
clipping) draws from its own seeded streams (pipeline/attacks/base.py `Attack.draws`: one per example), so the
errors at ε = .25 are the same with `evaluation.epsilons=[.25]`, with three ε, and with the attacks in another order."""
from __future__ import annotations

from typing import Any

import pytest
import torch
from omegaconf import OmegaConf

from tests.support.training import train_sgd
from pipeline.config import CONF_DIR
from pipeline.models import Maxout
from pipeline.regularizers import Adversarial
from pipeline.evaluation.rows import evaluate_attacks

EPS = 0.25
RANDOM = ("fgsm_random_start", "pgd", "apgd")       # the attacks of conf/sweep.yaml that draw random numbers


@pytest.fixture(autouse=True)
def one_thread():
    """Many small passes (AutoAttack's APGD-T on 20 examples): on a shared 2-core machine a second torch thread
    made them 20 times slower (7 s against 140 s), so this module runs on one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def robust_maxout(mnist_splits):
    """A small maxout adversarially trained at ε = .25: attacks fool part of its test digits, not all, so where
    a random start lands decides some examples."""
    (x, y), (x_test, y_test) = mnist_splits
    model = train_sgd(lambda: Maxout(x.shape[1:], 10, units=64, pieces=5, input_dropout=0.0, hidden_dropout=0.0),
                      x[:2000], y[:2000], Adversarial(0.5, EPS), epochs=3)
    return model, x_test[:200], y_test[:200]


def attacks(order: list[str] | None = None, seed: int = 0) -> dict[str, Any]:
    """conf/sweep.yaml's evaluation attacks (APGD with fewer steps, AutoAttack's APGD-CE and APGD-T on at most 20
    survivors: test time), in `order`, AutoAttack last (it attacks what the others left)."""
    shipped = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "sweep.yaml").evaluation.attacks)
    shipped["apgd"]["steps"] = 20
    shipped["autoattack"].update(limit=20, components=["apgd-ce", "apgd-t"])
    chosen = {name: shipped[name] for name in (order or [n for n in shipped if n != "autoattack"])}
    for attack in chosen.values():
        attack["seed"] = seed
    return {**chosen, "autoattack": shipped["autoattack"]}


def errors_at(model, x, y, epsilons, attack_configs, job_id="job") -> dict[tuple[str, str], float]:
    """(evaluation, clipping) -> error at ε = .25."""
    rows, _ = evaluate_attacks(model, x, y, attack_configs, [None, [0.0, 1.0]], epsilons, 100, job_id=job_id)
    return {(r["evaluation"], r["clip"]): r["error"] for r in rows
            if r["eps"] == EPS and not r["evaluation"].startswith("autoattack:")}


def test_a_number_at_one_eps_does_not_move_with_other_eps_or_attack_order(robust_maxout):
    model, x, y = robust_maxout
    state = torch.get_rng_state()
    alone = errors_at(model, x, y, [EPS], attacks())
    assert torch.equal(torch.get_rng_state(), state)      # AutoAttack reseeds torch's generator: restored after
    assert 0.05 < alone[("pgd", "0-1")] < 0.95, alone      # neither all nor none fooled: the draws decide some
    three = errors_at(model, x, y, [0.1, EPS, 0.3], attacks())
    reordered = errors_at(model, x, y, [0.3, EPS], attacks(["minimum_norm", "apgd", "pgd",
                                                           "fgsm_predicted_labels", "fgsm_random_start", "fgsm"]))
    assert three == alone
    assert reordered == alone
    assert {("strongest", "0-1"), ("autoattack", "0-1"), ("minimum_norm", "0-1")} <= set(alone)


def test_the_draws_decide_some_examples_and_follow_the_seed_and_the_job(robust_maxout):
    """The test above could fail: another seed, or another job's stream, moves at least one random attack's error
    (the same seed and job give the same numbers)."""
    model, x, y = robust_maxout
    subset = {name: attacks()[name] for name in RANDOM}
    first = errors_at(model, x, y, [EPS], subset)
    assert errors_at(model, x, y, [EPS], subset) == first
    other_seed = errors_at(model, x, y, [EPS], {name: {**a, "seed": 1} for name, a in subset.items()})
    other_job = errors_at(model, x, y, [EPS], subset, job_id="another job")
    assert any(other_seed[key] != first[key] for key in first), first
    assert any(other_job[key] != first[key] for key in first), first
