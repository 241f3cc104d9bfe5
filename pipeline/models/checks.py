"""The model contract, checked before any training or attack (pipeline/models/contract.py measures): [N, classes]
outputs for the data's images, logits rather than probabilities, the same outputs for the same input in eval mode.
Each failure is one line naming the model and what was expected."""
from __future__ import annotations

import torch
from torch import nn

from pipeline.models.contract import output_variation, probability_share
from pipeline.errors import ConfigError, one_line


def check_model(model: nn.Module, name: str, x: torch.Tensor, num_classes: int, stochastic: bool = False) -> None:
    """Refuse (ConfigError) a model that breaks the contract on a few of the data's images `x`."""
    batch = x[:8]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outputs = model(batch)
    except Exception as error:  # noqa: BLE001 - whatever a user's model raises becomes one line naming it
        raise ConfigError(f"model {name} rejects inputs of shape {list(batch.shape)} (the data's images are "
                          f"{list(x.shape[1:])}, pixels in [0, 1]): {type(error).__name__}: "
                          f"{one_line(error)}") from None
    finally:
        model.train(was_training)
    if not isinstance(outputs, torch.Tensor) or tuple(outputs.shape) != (len(batch), num_classes):
        shape = list(outputs.shape) if isinstance(outputs, torch.Tensor) else type(outputs).__name__
        raise ConfigError(f"model {name} returns {shape} for inputs of shape {list(batch.shape)}; expected "
                          f"[N, classes] = [{len(batch)}, {num_classes}] logits")
    if probability_share(outputs) > 0.5:
        raise ConfigError(f"model {name} returns probabilities (rows in [0, 1] summing to 1), expected logits: "
                          "end forward before the softmax (Harness applies it where it needs probabilities)")
    variation = output_variation(model, batch)
    if variation > 0 and not stochastic:
        raise ConfigError(f"model {name} gives different outputs for the same input in eval mode (by up to "
                          f"{variation:.3g}): a randomized model, which gradient attacks must average over (EOT) "
                          "to be trusted; set model.stochastic=true to evaluate it anyway")
