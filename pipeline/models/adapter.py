"""What attacks and training need from a model beyond `forward`, with defaults: any `nn.Module` that maps
[N, C, H, W] images in [0, 1] to [N, classes] logits is a model.

A model may define any of these itself (Harness's own models do); one that does not gets the default here, so a
user's plain `nn.Module` needs no base class:

    cost(logits, y)        the training cost J, also the one FGSM attacks     default: cross-entropy
    loss(x, y)             J of the model's own prediction on x              default: cost(model(x), y)
    probabilities(logits)  how logits become class probabilities             default: softmax
    constrain()            after every optimizer step (max-norm)             default: nothing
    initialize(x, y)       a data-dependent start, before training           default: nothing
    first_layer            the first layer of weights (Fig. 3, L1)           default: none
    affine                 the logits are affine in x (attacks/exact.py)     default: False
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def cost(model: nn.Module, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The model's training cost J, averaged over the batch."""
    return model.cost(logits, y) if hasattr(model, "cost") else F.cross_entropy(logits, y)


def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """J(θ, x, y) of the model's own prediction on x (an ensemble averages its members' costs)."""
    return model.loss(x, y) if hasattr(model, "loss") else cost(model, model(x), y)


def probabilities(model: nn.Module, logits: torch.Tensor) -> torch.Tensor:
    return model.probabilities(logits) if hasattr(model, "probabilities") else logits.softmax(dim=-1)


def constrain(model: nn.Module) -> None:
    if hasattr(model, "constrain"):
        model.constrain()


def initialize(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    if hasattr(model, "initialize"):
        model.initialize(x, y)


def first_layer(model: nn.Module) -> nn.Module | None:
    """The model's first layer of weights (a `weight` of [units, inputs...]), or None when it names none."""
    return getattr(model, "first_layer", None)
