"""What a model must be, measured: logits (not probabilities), deterministic in eval mode.

Each function returns a number, so that one measurement serves both the contract checks made before any training
or attack (a one-line error when it is off) and the evaluation's diagnostics (a value, a threshold and a flag).
"""
from __future__ import annotations

import torch
from torch import nn


def probability_share(outputs: torch.Tensor, atol: float = 1e-5) -> float:
    """The share of output rows that look like probabilities: every entry in [0, 1] and the row summing to 1
    (AutoAttack's `check_range_output`). Logits do this by chance almost never; a `softmax` at the end of
    `forward` always does."""
    outputs = outputs.detach().float()
    in_range = ((outputs >= -atol) & (outputs <= 1 + atol)).all(dim=1)
    sums_to_one = (outputs.sum(dim=1) - 1).abs() <= atol * outputs.shape[1] + 1e-4
    return float((in_range & sums_to_one).float().mean())


@torch.no_grad()
def output_variation(model: nn.Module, x: torch.Tensor) -> float:
    """The largest absolute difference between two eval-mode passes on the same inputs: 0 for a deterministic
    model, above 0 for a randomized one (dropout left on, input noise, a random defence). Restores the mode."""
    was_training = model.training
    model.eval()
    try:
        return float((model(x) - model(x)).abs().max())
    finally:
        model.train(was_training)
