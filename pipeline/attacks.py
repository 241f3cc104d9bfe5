"""L∞ attacks: the fast gradient sign method (FGSM) and the iterative attacks honest evaluation needs.

Attacks are plain functions on a model that maps [0, 1] images to logits. They run the model in eval mode,
restore its mode afterwards and leave no gradients on its parameters. The attacked cost J is the model's own
training cost (`model.cost`, cross-entropy for models that do not define one).

FGSM's direction sign(∇ₓJ) does not depend on ε, so `fgsm_curve` pays one gradient for the whole ε curve.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.errors import ConfigError

Clip = tuple[float, float] | None


@contextmanager
def attack_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode and frozen parameters for the duration of an attack; both restored on exit."""
    was_training = model.training
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    model.eval()
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
        model.train(was_training)


def cost(model: nn.Module, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The model's own cost J, summed over the batch so each example's gradient is independent of batch size."""
    per_batch = model.cost(logits, y) if hasattr(model, "cost") else F.cross_entropy(logits, y)
    return per_batch * len(y)


def probabilities(model: nn.Module, logits: torch.Tensor) -> torch.Tensor:
    return model.probabilities(logits) if hasattr(model, "probabilities") else logits.softmax(dim=-1)


def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """∇ₓJ(θ, x, y) and the clean logits; y=None uses the model's own predictions (no label leaking)."""
    with attack_mode(model), torch.enable_grad():
        x = x.detach().requires_grad_(True)   # a new leaf sharing x's storage: no copy
        logits = model(x)
        labels = logits.argmax(dim=1) if y is None else y
        (grad,) = torch.autograd.grad(cost(model, logits, labels), x)
    return grad, logits.detach()


def check_eps(eps: float, name: str = "eps") -> float:
    """An L∞ radius in pixel units: pixels lie in [0, 1], so a radius above 1 is outside the data's range."""
    if not 0 <= eps <= 1:
        raise ConfigError(f"{name}={eps} must lie in [0, 1] (an L∞ radius in pixel units; pixels lie in [0, 1])")
    return float(eps)


def step(x: torch.Tensor, direction: torch.Tensor, eps: float, clip: Clip) -> torch.Tensor:
    """x + ε·direction, clipped to the input range when `clip` is given (one new tensor, no temporaries)."""
    adv = torch.add(x, direction, alpha=eps)
    return adv.clamp_(*clip) if clip is not None else adv


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, eps: float, clip: Clip = (0.0, 1.0)
         ) -> torch.Tensor:
    """x + ε·sign(∇ₓJ(θ, x, y)). clip=None is the paper's unclipped attack; y=None crafts with predictions."""
    eps = check_eps(eps)
    grad, _ = input_gradient(model, x, y)
    return step(x.detach(), grad.sign_(), eps, clip)


@dataclass
class Curve:
    """Predictions under FGSM for K values of ε on N examples, scored against `labels`."""

    epsilons: list[float]
    predictions: torch.Tensor   # [K, N] predicted class
    confidences: torch.Tensor   # [K, N] probability of the predicted class
    labels: torch.Tensor        # [N]

    @property
    def wrong(self) -> torch.Tensor:
        return self.predictions != self.labels

    @property
    def error(self) -> torch.Tensor:
        return self.wrong.float().mean(dim=1)

    @property
    def confidence(self) -> torch.Tensor:
        return self.confidences.mean(dim=1)

    @property
    def confidence_wrong(self) -> torch.Tensor:
        """Mean confidence on misclassified examples (NaN where there are none)."""
        wrong = self.wrong.float()
        return (self.confidences * wrong).sum(dim=1) / wrong.sum(dim=1)

    def rows(self) -> list[dict[str, float]]:
        return [{"eps": e, "error": float(err), "confidence": float(c), "confidence_wrong": float(cw)}
                for e, err, c, cw in zip(self.epsilons, self.error, self.confidence, self.confidence_wrong)]


def fgsm_curve(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, epsilons: Sequence[float],
               clip: Clip = (0.0, 1.0), craft_with: str = "true", batch_size: int | None = None) -> Curve:
    """FGSM at every ε of `epsilons` for one input gradient per batch, and a forward pass per ε.

    Scored against y (the clean predictions if y is None). craft_with="predicted" crafts with the model's own
    predictions, as a defence against label leaking; "true" with y.
    """
    if craft_with not in ("true", "predicted"):
        raise ConfigError(f"craft_with={craft_with!r}; use 'true' or 'predicted'")
    epsilons = [check_eps(e, "epsilon") for e in epsilons]
    if not epsilons:
        raise ConfigError("epsilons is empty; give at least one ε ≥ 0")
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


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, eps: float, step_size: float, steps: int,
        random_start: bool = True, restarts: int = 1, clip: Clip = (0.0, 1.0),
        generator: torch.Generator | None = None) -> torch.Tensor:
    """Projected gradient ascent on J in the L∞ ball of radius ε (BIM when random_start=False).

    With several restarts, each example keeps the first restart that fooled the model.
    steps=1, step_size=ε and no random start is exactly FGSM; random_start with steps=1 is random-start FGSM.
    """
    eps = check_eps(eps)
    if steps < 1:
        raise ConfigError(f"attack.steps={steps} must be ≥ 1")
    if not step_size > 0:
        raise ConfigError(f"attack.step_size={step_size} must be > 0")
    if restarts < 1:
        raise ConfigError(f"attack.restarts={restarts} must be ≥ 1")
    x = x.detach()
    labels = y if y is not None else input_gradient(model, x)[1].argmax(dim=1)
    best, best_fooled = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for restart in range(restarts):
        noise = torch.rand(x.shape, generator=generator).to(x) * 2 - 1 if random_start else torch.zeros_like(x)
        adv = step(x, noise, eps, clip)
        for _ in range(steps):
            grad, _ = input_gradient(model, adv, labels)
            adv = torch.min(torch.max(adv + step_size * grad.sign(), x - eps), x + eps)   # project on the ball
            adv = adv.clamp(*clip) if clip is not None else adv
        with attack_mode(model), torch.no_grad():
            fooled = model(adv).argmax(dim=1) != labels
        keep = (fooled & ~best_fooled) | (restart == 0)
        best[keep], best_fooled = adv[keep], best_fooled | fooled
    return best


def scores(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Confidence and predicted class, in whatever mode the model is in."""
    return probabilities(model, model(x)).max(dim=-1)


def predict(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Confidence and predicted class, without gradients, in eval mode."""
    with attack_mode(model), torch.no_grad():
        return scores(model, x)


class FGSM:
    """The evaluation attack `attack=fgsm`: an FGSM curve (one gradient per batch for every ε)."""

    name = "fgsm"

    def __init__(self, clip: Sequence[float] | None = (0.0, 1.0), craft_with: str = "true") -> None:
        self.clip, self.craft_with = (tuple(clip) if clip is not None else None), craft_with

    def curve(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilons: Sequence[float],
              batch_size: int | None = None) -> Curve:
        return fgsm_curve(model, x, y, epsilons, self.clip, self.craft_with, batch_size)


class PGD(FGSM):
    """The evaluation attack `attack=pgd`: PGD at every ε, with a step of `step_fraction`·ε.

    PGD maximizes the cost, not the error: on a few examples its last iterate (or its random start) misses an
    adversarial example that FGSM finds. With `with_fgsm` (the default) an example counts as fooled when PGD or
    FGSM fools it, so the PGD curve is never below the FGSM curve and the gap between them measures gradient
    masking rather than the luck of one attack.
    """

    name = "pgd"

    def __init__(self, steps: int = 10, step_fraction: float = 0.25, random_start: bool = True, restarts: int = 1,
                 clip: Sequence[float] | None = (0.0, 1.0), craft_with: str = "true", seed: int = 0,
                 with_fgsm: bool = True) -> None:
        super().__init__(clip, craft_with)
        self.with_fgsm = with_fgsm
        if not step_fraction > 0:
            raise ConfigError(f"attack.step_fraction={step_fraction} must be > 0 (the step size as a fraction of ε)")
        if steps < 1 or restarts < 1:
            raise ConfigError(f"attack.steps={steps} and attack.restarts={restarts} must be ≥ 1")
        self.steps, self.step_fraction, self.random_start, self.restarts = steps, step_fraction, random_start, restarts
        self.seed = seed

    def curve(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilons: Sequence[float],
              batch_size: int | None = None) -> Curve:
        epsilons = [check_eps(e, "epsilon") for e in epsilons]
        generator = torch.Generator().manual_seed(self.seed)
        size = batch_size or len(x)
        predictions, confidences = [], []
        for start in range(0, len(x), size):
            xb, yb = x[start: start + size].detach(), y[start: start + size]
            craft = yb if self.craft_with == "true" else None
            advs = [xb if e == 0 else pgd(model, xb, craft, e, self.step_fraction * e, self.steps,
                                          self.random_start, self.restarts, self.clip, generator) for e in epsilons]
            if self.with_fgsm:
                direction = input_gradient(model, xb, craft)[0].sign()
                for k, e in enumerate(epsilons):
                    fast = step(xb, direction, e, self.clip)
                    use_fast = (predict(model, advs[k])[1] == yb) & (predict(model, fast)[1] != yb)
                    advs[k] = torch.where(use_fast.view(-1, *[1] * (xb.ndim - 1)), fast, advs[k])
            confidence, predicted = zip(*(predict(model, adv) for adv in advs))
            predictions.append(torch.stack(predicted))
            confidences.append(torch.stack(confidence))
        return Curve(epsilons, torch.cat(predictions, dim=1), torch.cat(confidences, dim=1), y)
