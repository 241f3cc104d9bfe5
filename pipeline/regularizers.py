"""Training objectives: the model's cost J plus what each regularizer changes.

A regularizer's `objective(model, x, y)` is the value being minimised; `backward(model, x, y)` fills the
parameters' gradients with ∇θ of it and returns its value. The default `backward` is autograd on `objective`;
adversarial training overrides it with a fast path that reuses the clean pass's input gradient.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from pipeline.models import adapter
from pipeline.attacks import check_eps, step
from pipeline.errors import ConfigError


class Regularizer:
    """No regularization: J(θ, x, y)."""

    def objective(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return adapter.loss(model, self.transform(x), y) + self.penalty(model)

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Training inputs as the regularizer presents them (noise regularizers perturb them)."""
        return x

    def penalty(self, model: nn.Module) -> torch.Tensor | float:
        return 0.0

    def backward(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = self.objective(model, x, y)
        loss.backward()
        return loss.detach()

    def check(self, model: nn.Module) -> None:
        """Refuse, before any training, a model this regularizer cannot apply to (ConfigError); any by default."""


def check_coefficient(name: str, value: float) -> float:
    if not value >= 0:
        raise ConfigError(f"regularizer.{name}={value} must be ≥ 0")
    return float(value)


class WeightDecay(Regularizer):
    """J + λ·Σ‖W‖² over all weight matrices and kernels (biases excluded)."""

    def __init__(self, coefficient: float = 5e-4) -> None:
        self.coefficient = check_coefficient("coefficient", coefficient)

    def penalty(self, model: nn.Module) -> torch.Tensor:
        return self.coefficient * sum(p.pow(2).sum() for n, p in model.named_parameters() if p.ndim > 1)


class L1(Regularizer):
    """J + λ·‖W‖₁, on the first layer's weights by default (as in the paper), or on all weights."""

    def __init__(self, coefficient: float = 0.0025, layers: str = "first") -> None:
        if layers not in ("first", "all"):
            raise ConfigError(f"regularizer.layers={layers!r}; use 'first' or 'all'")
        self.coefficient, self.layers = check_coefficient("coefficient", coefficient), layers

    def check(self, model: nn.Module) -> None:
        if self.layers == "first" and adapter.first_layer(model) is None:
            raise ConfigError(f"regularizer.layers=first: model {type(model).__name__} has no first layer of weights "
                              "to put L1 on (the paper's is maxout's); use softmax, logistic, maxout, mlp or conv")

    def penalty(self, model: nn.Module) -> torch.Tensor:
        if self.layers == "first":
            return self.coefficient * adapter.first_layer(model).weight.abs().sum()
        return self.coefficient * sum(p.abs().sum() for p in model.parameters() if p.ndim > 1)


class SignNoise(Regularizer):
    """Train on x + ε·s with s ∈ {−1, +1} drawn per pixel: the paper's random ±ε control."""

    def __init__(self, eps: float = 0.25, clip: Sequence[float] | None = None) -> None:
        self.eps, self.clip = check_eps(eps, "regularizer.eps"), tuple(clip) if clip else None

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return step(x, torch.randint_like(x, 2) * 2 - 1, self.eps, self.clip)


class UniformNoise(SignNoise):
    """Train on x + U(−ε, ε) per pixel."""

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return step(x, torch.rand_like(x) * 2 - 1, self.eps, self.clip)


class Adversarial(Regularizer):
    """FGSM adversarial training: J̃ = α·J(θ, x, y) + (1 − α)·J(θ, x + ε·sign ∇ₓJ(θ, x, y), y).

    The adversarial example is held fixed (no gradient flows through its construction), as in the paper.
    `labels="predicted"` crafts with the model's own predictions to avoid label leaking.
    """

    def __init__(self, alpha: float = 0.5, eps: float = 0.25, clip: Sequence[float] | None = None,
                 labels: str = "true") -> None:
        if not 0 <= alpha <= 1:
            raise ConfigError(f"regularizer.alpha={alpha} must lie in [0, 1]")
        if labels not in ("true", "predicted"):
            raise ConfigError(f"regularizer.labels={labels!r}; use 'true' or 'predicted'")
        self.alpha, self.eps, self.labels = float(alpha), check_eps(eps, "regularizer.eps"), labels
        self.clip = tuple(clip) if clip else None

    def objective(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The formula, written plainly (two gradients); `backward` computes the same thing faster."""
        x = x.detach().requires_grad_(True)
        logits = model(x)
        (grad,) = torch.autograd.grad(adapter.cost(model, logits, self.craft_labels(logits, y)), x)
        x_adv = step(x.detach(), grad.sign_(), self.eps, self.clip)
        return self.alpha * adapter.loss(model, x.detach(), y) + (1 - self.alpha) * adapter.loss(model, x_adv, y)

    def craft_labels(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return y if self.labels == "true" else logits.detach().argmax(dim=1)

    def backward(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One backward of the clean cost gives ∇θJ and ∇ₓJ together; then one forward and backward on x_adv."""
        params = [p for p in model.parameters() if p.requires_grad]
        x = x.detach().requires_grad_(True)
        logits = model(x)
        clean = adapter.cost(model, logits, y)
        if self.labels == "true" and self.alpha > 0:
            # ∇ₓ(α·J) has the sign of ∇ₓJ: one backward accumulates ∇θ into .grad and gives the direction
            torch.autograd.backward(self.alpha * clean, inputs=[x, *params])
        else:   # the direction comes from another cost (predicted labels) or the clean term weighs nothing
            crafting = adapter.cost(model, logits, self.craft_labels(logits, y))
            (x.grad,) = torch.autograd.grad(crafting, x, retain_graph=True)
            torch.autograd.backward(self.alpha * clean, inputs=params)
        x_adv = step(x.detach(), x.grad.sign_(), self.eps, self.clip)
        adversarial = adapter.loss(model, x_adv, y)
        ((1 - self.alpha) * adversarial).backward()
        return (self.alpha * clean + (1 - self.alpha) * adversarial).detach()
