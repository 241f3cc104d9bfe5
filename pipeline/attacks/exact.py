"""The exact worst case of a model whose logits are affine in x (softmax and logistic regression): no attack, a
closed form, the yardstick every attack on such a model must reach.

For logits z(x) = Wx + b and a wrong class k, z_k − z_y moves by (w_k − w_y)·δ, which is largest in the box
δ ∈ [lo, hi] (the ε-ball, intersected with the input range when clipped) with every pixel at the bound its
coefficient points to. An example is fooled iff one of those points (one per wrong class) is misclassified,
scored by the model's own argmax as every attack is (ties go to the lower class index). A model declares that
it is affine with a class attribute `affine = True`.
"""
from __future__ import annotations

import torch
from torch import nn

from pipeline.attacks.base import Attack, Clip, Draws, attack_mode, check_eps, predict
from pipeline.errors import ConfigError


def is_affine(model: nn.Module) -> bool:
    return bool(getattr(model, "affine", False))


def affine_weights(model: nn.Module, like: torch.Tensor) -> torch.Tensor:
    """W of z(x) = Wx + b, as [classes, *input shape]: the Jacobian at any input (here 0)."""
    with attack_mode(model), torch.enable_grad():
        zero = torch.zeros((1, *like.shape[1:]), dtype=like.dtype, device=like.device)
        return torch.autograd.functional.jacobian(lambda x: model(x)[0], zero)[:, 0]


def worst_case(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, clip: Clip = (0.0, 1.0)
               ) -> torch.Tensor:
    """The point of the box that fools an affine model if any does: per example, the first wrong class whose
    extreme point is misclassified, else the one that comes closest (largest z_k − z_y)."""
    if not is_affine(model):
        raise ConfigError(f"{type(model).__name__} does not declare affine = True; the exact worst case needs "
                          "logits affine in x")
    eps = check_eps(eps)
    x = x.detach()
    lo, hi = -eps * torch.ones_like(x), eps * torch.ones_like(x)
    if clip is not None:
        lo, hi = torch.maximum(lo, clip[0] - x), torch.minimum(hi, clip[1] - x)
    weights = affine_weights(model, x)                                  # [C, *shape]
    towards = weights[None] - weights[y][:, None]                       # [N, C, *shape]: w_k − w_y
    points = x[:, None] + torch.where(towards > 0, hi[:, None], torch.where(towards < 0, lo[:, None], 0.0))
    n, classes = towards.shape[:2]
    flat = points.reshape(n * classes, *x.shape[1:])
    with attack_mode(model), torch.no_grad():
        logits = model(flat).view(n, classes, classes)
    own = logits.gather(2, y.view(n, 1, 1).expand(n, classes, 1)).squeeze(2)
    margin = logits.diagonal(dim1=1, dim2=2) - own                      # z_k − z_y at point k
    wrong = logits.argmax(dim=2) != y[:, None]                          # [N, C]: point k is misclassified
    margin[torch.arange(n), y] = -torch.inf                             # point y is x itself
    pick = torch.where(wrong.any(dim=1), wrong.int().argmax(dim=1), margin.argmax(dim=1))
    return points[torch.arange(n), pick]


class Exact(Attack):
    """The `exact` rows of evaluations.csv: the closed-form worst case of an affine model at every ε."""

    name = "exact"

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, eps: float,
                draws: Draws | None = None) -> torch.Tensor:   # no random draws
        return worst_case(model, x, y if y is not None else predict(model, x)[1], eps, self.clip)
