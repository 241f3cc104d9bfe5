"""APGD-CE (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks"), the first attack of AutoAttack, on the L∞ ball.

PGD with a step size it sets itself: it starts at 2ε, adds momentum (α = 0.75) and, at checkpoints that come
closer together as the run goes on, halves the step of every example whose cost stalled (it rose in at most
ρ = 75% of the steps since the last checkpoint, or its best cost did not improve and its step was not just halved),
restarting that example from the point of highest cost found. Follows the reference implementation
(fra31/auto-attack, `autopgd_base.py`; torchattacks' APGD is a copy): random start, only the examples the model
still classifies right are attacked, each example keeps an iterate that fooled the model, else its point of highest
cost. One departure that changes no example's outcome: an example stops once fooled (the reference runs it on and
returns its last fooling iterate). The cost is the model's own training cost (cross-entropy for every model but
the per-class RBF).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from pipeline.attacks.base import (Attack, Clip, Draws, attack_mode, check_eps, costs_and_gradient, predict, project,
                                   uniform_noise)
from pipeline.attacks.pgd import check_iterations
from pipeline.errors import ConfigError

MOMENTUM = 0.75     # α: weight of the new step against the last one (the paper's value)


def check_rho(rho: float) -> float:
    if not 0 < rho < 1:
        raise ConfigError(f"attack.rho={rho} must lie in (0, 1) (the share of rising steps below which the step "
                          "halves)")
    return float(rho)


def checkpoints(steps: int) -> dict[int, int]:
    """{iteration after which the step size is checked: the steps since the last check}. The reference's schedule:
    the first check after 22% of the steps, each interval 3% of the steps shorter than the last, at least 6%."""
    first, shortest, decrease = (max(int(fraction * steps), 1) for fraction in (0.22, 0.06, 0.03))
    checks, at, window = {}, 0, first
    while at + window <= steps:
        at += window
        checks[at - 1] = window
        window = max(window - decrease, shortest)
    return checks


def apgd_run(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, rho: float, clip: Clip,
             start: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One APGD run from `start` (inside the ball). Returns, per example, the iterate that fooled the model, else
    its point of highest cost; and whether it fooled the model. An example leaves the run once it fooled the model:
    everything APGD keeps is per example, so the others go on as they would have, and the rest of its run could
    not change that it was fooled (on a model FGSM fools, the run then costs a few steps instead of `steps`)."""
    shape = (-1,) + (1,) * (x.ndim - 1)
    adv, previous = start.clone(), start.clone()
    cost, grad, logits = costs_and_gradient(model, adv, y)
    fooled = logits.argmax(dim=1) != y
    found, best, best_cost, best_grad = adv.clone(), adv.clone(), cost.clone(), grad.clone()
    step_size = torch.full((len(x),), 2.0 * eps, dtype=x.dtype, device=x.device).view(shape)
    history = [cost]                                    # each example's cost after each step, the start first
    checked_cost, halved = best_cost.clone(), torch.ones_like(fooled)   # the first check halves on rises alone
    checks = checkpoints(steps)
    for i in range(steps):
        a = (~fooled).nonzero().squeeze(1)              # the examples still in the run
        if len(a) == 0:
            break
        alpha = 1.0 if i == 0 else MOMENTUM
        here = adv[a]
        z = project(here + step_size[a] * grad[a].sign(), x[a], eps, clip)
        adv[a] = project(here + alpha * (z - here) + (1 - alpha) * (here - previous[a]), x[a], eps, clip)
        previous[a] = here
        cost = history[-1].clone()
        cost[a], grad[a], logits = costs_and_gradient(model, adv[a], y[a])
        hit = a[logits.argmax(dim=1) != y[a]]
        found[hit], fooled[hit] = adv[hit], True
        better = a[cost[a] > best_cost[a]]
        best[better], best_cost[better], best_grad[better] = adv[better], cost[better], grad[better]
        history.append(cost)
        if i in checks:
            window = checks[i]
            rises = sum((history[-m] > history[-m - 1]).int() for m in range(1, window + 1))
            halve = (rises <= rho * window) | (~halved & (checked_cost >= best_cost))
            step_size[halve] /= 2
            adv[halve], grad[halve] = best[halve], best_grad[halve]   # go on from the best point
            halved, checked_cost = halve, best_cost.clone()
    return torch.where(fooled.view(shape), found, best), fooled


def apgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, eps: float, steps: int = 100, restarts: int = 1,
         rho: float = 0.75, clip: Clip = (0.0, 1.0), draws: Draws | None = None) -> torch.Tensor:
    """APGD on J in the L∞ ball of radius ε around x; y=None crafts with the model's own predictions.

    Each restart starts on the ball's surface, at x + ε·t/‖t‖∞ with t uniform in [−1, 1]ⁿ (the reference's start),
    and attacks only the examples no earlier restart fooled. Examples the model already gets wrong come back as
    they are. Starts come from `draws` (per example; None: torch's global generator).
    """
    eps = check_eps(eps)
    check_iterations(steps, restarts)
    check_rho(rho)
    x = x.detach()
    with attack_mode(model):
        predicted = predict(model, x)[1]
        labels = predicted if y is None else y
        adv, fooled = x.clone(), predicted != labels
        for _ in range(restarts):
            todo = (~fooled).nonzero().squeeze(1)
            if len(todo) == 0:
                break
            noise = uniform_noise(x, draws, todo)
            scale = noise.flatten(1).abs().amax(dim=1).clamp(min=1e-12).view(-1, *[1] * (x.ndim - 1))
            start = project(x[todo] + eps * noise / scale, x[todo], eps, clip)
            adv[todo], fooled[todo] = apgd_run(model, x[todo], labels[todo], eps, steps, rho, clip, start)
    return adv


class APGD(Attack):
    """The evaluation attack `attack=apgd`: APGD-CE at every ε."""

    name = "apgd"

    def __init__(self, steps: int = 100, restarts: int = 1, rho: float = 0.75,
                 clip: Sequence[float] | None = (0.0, 1.0), craft_with: str = "true", seed: int = 0) -> None:
        super().__init__(clip, craft_with, seed)
        check_iterations(steps, restarts)
        self.steps, self.restarts, self.rho = steps, restarts, check_rho(rho)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, eps: float,
                draws: Draws | None = None) -> torch.Tensor:
        return apgd(model, x, y, eps, self.steps, self.restarts, self.rho, self.clip,
                    draws or self.draws(eps, range(len(x))))
