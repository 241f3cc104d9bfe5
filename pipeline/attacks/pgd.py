"""Projected gradient descent on the L∞ ball (Madry et al. 2018); BIM without the random start."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from pipeline.attacks.base import (Attack, Clip, Draws, attack_mode, check_eps, input_gradient, predict, project,
                                   step, uniform_noise)
from pipeline.attacks.fgsm import fgsm
from pipeline.errors import ConfigError


def check_iterations(steps: int, restarts: int = 1) -> None:
    if steps < 1:
        raise ConfigError(f"attack.steps={steps} must be ≥ 1")
    if restarts < 1:
        raise ConfigError(f"attack.restarts={restarts} must be ≥ 1")


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, eps: float, step_size: float, steps: int,
        random_start: bool = True, restarts: int = 1, clip: Clip = (0.0, 1.0), draws: Draws | None = None
        ) -> torch.Tensor:
    """Projected gradient ascent on J in the L∞ ball of radius ε (BIM when random_start=False).

    With several restarts, each example keeps the first restart that fooled the model.
    steps=1, step_size=ε and no random start is exactly FGSM; random_start with steps=1 is random-start FGSM.
    Random starts come from `draws` (per example; None: torch's global generator).
    """
    eps = check_eps(eps)
    check_iterations(steps, restarts)
    if not step_size > 0:
        raise ConfigError(f"attack.step_size={step_size} must be > 0")
    x = x.detach()
    labels = y if y is not None else input_gradient(model, x)[1].argmax(dim=1)
    best, best_fooled = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for restart in range(restarts):
        noise = uniform_noise(x, draws) if random_start else torch.zeros_like(x)
        adv = step(x, noise, eps, clip)
        for _ in range(steps):
            grad, _ = input_gradient(model, adv, labels)
            adv = project(adv + step_size * grad.sign(), x, eps, clip)
        with attack_mode(model), torch.no_grad():
            fooled = model(adv).argmax(dim=1) != labels
        keep = (fooled & ~best_fooled) | (restart == 0)
        best[keep], best_fooled = adv[keep], best_fooled | fooled
    return best


class PGD(Attack):
    """The evaluation attack `attack=pgd`: PGD at every ε, with a step of `step_fraction`·ε.

    PGD maximizes the cost, not the error: on a few examples its last iterate (or its random start) misses an
    adversarial example that FGSM finds. With `with_fgsm` an example counts as fooled when PGD or FGSM fools it,
    so the PGD curve is never below the FGSM curve.
    """

    name = "pgd"

    def __init__(self, steps: int = 10, step_fraction: float = 0.25, random_start: bool = True, restarts: int = 1,
                 clip: Sequence[float] | None = (0.0, 1.0), craft_with: str = "true", seed: int = 0,
                 with_fgsm: bool = True) -> None:
        super().__init__(clip, craft_with, seed)
        check_iterations(steps, restarts)
        if not step_fraction > 0:
            raise ConfigError(f"attack.step_fraction={step_fraction} must be > 0 (the step size as a fraction of ε)")
        self.steps, self.step_fraction, self.random_start, self.restarts = steps, step_fraction, random_start, restarts
        self.with_fgsm = with_fgsm

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, eps: float,
                draws: Draws | None = None) -> torch.Tensor:
        adv = pgd(model, x, y, eps, self.step_fraction * eps, self.steps, self.random_start, self.restarts,
                  self.clip, draws or self.draws(eps, range(len(x))))
        if not self.with_fgsm:
            return adv
        labels = y if y is not None else predict(model, x)[1]
        fast = fgsm(model, x, labels, eps, self.clip)
        use_fast = (predict(model, adv)[1] == labels) & (predict(model, fast)[1] != labels)
        return torch.where(use_fast.view(-1, *[1] * (x.ndim - 1)), fast, adv)
