"""Forward and backward passes counted with hooks on the model, not taken from the code under test."""
from __future__ import annotations

from typing import Any, Callable

import torch


class PassCounter:
    """Counts forward passes of a model (forward hook) and backward passes through its output (tensor hook)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.forwards = self.backwards = 0
        self.handle = model.register_forward_hook(self._forward)

    def _forward(self, module: torch.nn.Module, inputs: Any, output: Any) -> None:
        self.forwards += 1
        if isinstance(output, torch.Tensor) and output.requires_grad:
            output.register_hook(self._backward)

    def _backward(self, grad: torch.Tensor) -> None:
        self.backwards += 1

    def close(self) -> None:
        self.handle.remove()


def count_passes(model: torch.nn.Module, fn: Callable[[], Any]) -> dict[str, int]:
    counter = PassCounter(model)
    try:
        fn()
    finally:
        counter.close()
    return {"forwards": counter.forwards, "backwards": counter.backwards}
