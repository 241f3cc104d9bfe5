"""The fast gradient sign method: η = ε·sign(∇ₓJ(θ, x, y)).

Its direction does not depend on ε, so `fgsm_curve` pays one input gradient per batch for the whole ε curve.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from pipeline.attacks.base import (Attack, Clip, Curve, Draws, attack_mode, check_eps, check_epsilons, input_gradient,
                                   scores, step)
from pipeline.errors import ConfigError


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, eps: float, clip: Clip = (0.0, 1.0)
         ) -> torch.Tensor:
    """x + ε·sign(∇ₓJ(θ, x, y)). clip=None is the paper's unclipped attack; y=None crafts with predictions."""
    eps = check_eps(eps)
    grad, _ = input_gradient(model, x, y)
    return step(x.detach(), grad.sign_(), eps, clip)


def fgsm_curve(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, epsilons: Sequence[float],
               clip: Clip = (0.0, 1.0), craft_with: str = "true", batch_size: int | None = None) -> Curve:
    """FGSM at every ε of `epsilons` for one input gradient per batch, and a forward pass per ε.

    Scored against y (the clean predictions if y is None). craft_with="predicted" crafts with the model's own
    predictions, as a defence against label leaking; "true" with y.
    """
    if craft_with not in ("true", "predicted"):
        raise ConfigError(f"craft_with={craft_with!r}; use 'true' or 'predicted'")
    epsilons = check_epsilons(epsilons)
    size = batch_size or len(x)
    predictions, confidences, labels = [], [], []
    for start in range(0, len(x), size):
        xb = x[start: start + size].detach()
        yb = None if y is None else y[start: start + size]
        grad, logits = input_gradient(model, xb, yb if craft_with == "true" else None)
        labels.append(logits.argmax(dim=1) if yb is None else yb)
        direction = grad.sign_()
        with attack_mode(model), torch.no_grad():   # one mode switch for the K scoring passes
            confidence, predicted = zip(*(scores(model, step(xb, direction, e, clip)) for e in epsilons))
        predictions.append(torch.stack(predicted))
        confidences.append(torch.stack(confidence))
    return Curve(epsilons, torch.cat(predictions, dim=1), torch.cat(confidences, dim=1), torch.cat(labels))


class FGSM(Attack):
    """The evaluation attack `attack=fgsm`: an FGSM curve (one gradient per batch for every ε)."""

    name = "fgsm"

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, eps: float,
                draws: Draws | None = None) -> torch.Tensor:   # no random draws
        return fgsm(model, x, y, eps, self.clip)

    def curve(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilons: Sequence[float],
              batch_size: int | None = None) -> Curve:
        return fgsm_curve(model, x, y, epsilons, self.clip, self.craft_with, batch_size)
