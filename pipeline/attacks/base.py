"""What every L∞ attack shares: eval mode without parameter gradients, the input gradient of the model's own cost,
the step x + ε·direction, scoring, the ε curve, and the `Attack` protocol the evaluation configs build.

An attack is a plain function on a model that maps [0, 1] images to logits. It runs the model in eval mode,
restores its mode afterwards and leaves no gradients on its parameters. The attacked cost J is the model's own
training cost (`model.cost`, cross-entropy for models that do not define one: pipeline.models.adapter).
"""
from __future__ import annotations

import functools
import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import nn

from pipeline.models import adapter
from pipeline.errors import ConfigError

Clip = tuple[float, float] | None
CRAFT_WITH = ("true", "predicted")


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
    return adapter.cost(model, logits, y) * len(y)


probabilities = adapter.probabilities


def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """∇ₓJ(θ, x, y) and the clean logits; y=None uses the model's own predictions (no label leaking)."""
    with attack_mode(model), torch.enable_grad():
        x = x.detach().requires_grad_(True)   # a new leaf sharing x's storage: no copy
        logits = model(x)
        labels = logits.argmax(dim=1) if y is None else y
        (grad,) = torch.autograd.grad(cost(model, logits, labels), x)
    return grad, logits.detach()


def costs_and_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each example's own cost J(θ, xᵢ, yᵢ), ∇ₓ of their sum and the logits: for attacks that track every example's
    cost (APGD). The model's batch-mean cost is mapped over single examples (torch.func.vmap), so it is the cost
    the model trains on, whatever the model."""
    def one(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return adapter.cost(model, logits[None], label[None])

    with attack_mode(model), torch.enable_grad():
        x = x.detach().requires_grad_(True)
        logits = model(x)
        per_example = torch.func.vmap(one)(logits, y)
        (grad,) = torch.autograd.grad(per_example.sum(), x)
    return per_example.detach(), grad, logits.detach()


def check_eps(eps: float, name: str = "eps") -> float:
    """An L∞ radius in pixel units: pixels lie in [0, 1], so a radius above 1 is outside the data's range."""
    if not 0 <= eps <= 1:
        raise ConfigError(f"{name}={eps} must lie in [0, 1] (an L∞ radius in pixel units; pixels lie in [0, 1])")
    return float(eps)


def check_epsilons(epsilons: Sequence[float]) -> list[float]:
    epsilons = [check_eps(e, "epsilon") for e in epsilons]
    if not epsilons:
        raise ConfigError("epsilons is empty; give at least one ε ≥ 0")
    return epsilons


def step(x: torch.Tensor, direction: torch.Tensor, eps: float, clip: Clip) -> torch.Tensor:
    """x + ε·direction, clipped to the input range when `clip` is given (one new tensor, no temporaries)."""
    adv = torch.add(x, direction, alpha=eps)
    return adv.clamp_(*clip) if clip is not None else adv


def project(adv: torch.Tensor, x: torch.Tensor, eps: float, clip: Clip) -> torch.Tensor:
    """adv moved into the L∞ ball of radius ε around x, then into the input range when `clip` is given."""
    adv = torch.min(torch.max(adv, x - eps), x + eps)
    return adv.clamp(*clip) if clip is not None else adv


def scores(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Confidence and predicted class, in whatever mode the model is in."""
    return probabilities(model, model(x)).max(dim=-1)


def predict(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Confidence and predicted class, without gradients, in eval mode."""
    with attack_mode(model), torch.no_grad():
        return scores(model, x)


def clean_scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple[float, float]:
    """Error rate and mean confidence on unperturbed inputs, batch by batch."""
    batches = [predict(model, x[i: i + batch_size]) for i in range(0, len(y), batch_size)]
    confidence, predicted = (torch.cat(parts) for parts in zip(*batches))
    return float((predicted != y).float().mean()), float(confidence.mean())


@dataclass
class Curve:
    """Predictions under an attack for K values of ε on N examples, scored against `labels`."""

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


def as_clip(clip: Sequence[float] | None) -> Clip:
    return None if clip is None else (float(clip[0]), float(clip[1]))


def stream_seed(*key: object) -> int:
    """A 63-bit seed from the key's text (sha256, not Python's salted `hash`): the same key gives the same seed in
    any process, on any machine, and two keys share no stream."""
    text = json.dumps([str(k) for k in key])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


class Draws:
    """Random draws per example: example i draws from its own generator, seeded by (seed, i) with i its index in
    the evaluated set, so its outcome does not depend on the examples beside it in a batch, a shard or an order.
    Each draw continues every example's stream (a restart draws anew)."""

    def __init__(self, seed: int, index: Sequence[int]) -> None:
        self.seed, self.index = seed, index

    @functools.cached_property
    def generators(self) -> list[torch.Generator]:
        """Made at the first draw: an attack without random draws (FGSM, BIM) never pays for them."""
        return [torch.Generator().manual_seed(stream_seed(self.seed, int(i))) for i in self.index]

    def part(self, start: int, stop: int) -> Draws:
        """The draws of examples start..stop-1 (a batch)."""
        return Draws(self.seed, self.index[start:stop])

    def uniform(self, like: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """U(−1, 1) noise for `rows` of `like` (default: every row, one per example), on its device and dtype."""
        chosen = range(len(self.index)) if rows is None else rows.tolist()
        if not chosen:
            return torch.empty((0, *like.shape[1:])).to(like)
        noise = torch.stack([torch.rand(like.shape[1:], generator=self.generators[i]) for i in chosen])
        return noise.to(like) * 2 - 1


def uniform_noise(like: torch.Tensor, draws: Draws | None, rows: torch.Tensor | None = None) -> torch.Tensor:
    """U(−1, 1) noise for `rows` of `like`: per example from `draws`, or from torch's global generator (None)."""
    if draws is not None:
        return draws.uniform(like, rows)
    shape = like.shape if rows is None else (len(rows), *like.shape[1:])
    return torch.rand(shape).to(like) * 2 - 1


class Attack:
    """An evaluation attack (`attack=<option>`, `evaluation.attacks`): `perturb` crafts a batch at one ε; `curve`
    scores the attack at every ε against the true labels. Crafting uses the true labels (`craft_with="true"`)
    or the model's own predictions ("predicted", no label leaking).

    Random draws come from one stream per example and ε, seeded by (`seed`, `stream`, ε, clipping, the example's
    index): the evaluation sets `stream` to (job id, attack name), so a number does not move when other ε,
    attacks or jobs are evaluated beside it, or in another order, and an example's outcome does not depend on the
    batch or shard it is attacked in."""

    name = "attack"

    def __init__(self, clip: Sequence[float] | None = (0.0, 1.0), craft_with: str = "true", seed: int = 0) -> None:
        if craft_with not in CRAFT_WITH:
            raise ConfigError(f"craft_with={craft_with!r}; use 'true' or 'predicted'")
        self.clip, self.craft_with, self.seed = as_clip(clip), craft_with, seed
        self.stream: tuple[object, ...] = ()

    def seed_for(self, eps: float, *more: object) -> int:
        """The seed of this attack's stream at ε (`more`: what else its draws depend on, e.g. AutoAttack's
        components)."""
        return stream_seed(self.seed, *self.stream, float(eps), self.clip, *more)

    def draws(self, eps: float, index: Sequence[int]) -> Draws:
        """The per-example streams at ε of the examples at `index` of the evaluated set."""
        return Draws(self.seed_for(eps), index)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, eps: float,
                draws: Draws | None = None) -> torch.Tensor:
        """Adversarial versions of the batch x at radius ε, crafted with labels y (None: the predictions). Random
        draws come from `draws` (None: `draws(eps, range(len(x)))`)."""
        raise NotImplementedError

    def accepts(self, clip: Clip) -> bool:
        """Whether the attack can run with this clipping (the evaluation skips the clippings it cannot)."""
        return True

    def craft_labels(self, y: torch.Tensor | None) -> torch.Tensor | None:
        return y if self.craft_with == "true" else None

    def curve(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilons: Sequence[float],
              batch_size: int | None = None, index: Sequence[int] | None = None) -> Curve:
        """Scores at every ε, batch by batch; `index`: the examples' indices in the evaluated set (default
        0..N-1), which seed their draws."""
        epsilons = check_epsilons(epsilons)
        size = batch_size or len(x)
        index = range(len(x)) if index is None else index
        draws = [self.draws(e, index) for e in epsilons]
        predictions, confidences = [], []
        for start in range(0, len(x), size):
            xb, yb = x[start: start + size].detach(), y[start: start + size]
            advs = [xb if e == 0 else self.perturb(model, xb, self.craft_labels(yb), e, d.part(start, start + size))
                    for e, d in zip(epsilons, draws)]
            confidence, predicted = zip(*(predict(model, adv) for adv in advs))
            predictions.append(torch.stack(predicted))
            confidences.append(torch.stack(confidence))
        return Curve(epsilons, torch.cat(predictions, dim=1), torch.cat(confidences, dim=1), y)
