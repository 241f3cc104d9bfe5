"""What every comparison runs on: the paper's models and MNIST-size random batches."""
from __future__ import annotations

import torch

from benchmarks.sizes import CLASSES, INPUT_SHAPE


def make_model(name: str, device: torch.device, seed: int = 0) -> torch.nn.Module:
    from pipeline.models import Maxout, Softmax

    torch.manual_seed(seed)
    model = {"softmax": Softmax, "maxout": Maxout}[name](INPUT_SHAPE, CLASSES)   # maxout: 2 × 240 units × 5 pieces
    return model.to(device)


def make_batch(n: int, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST-size random images in [0, 1] and random labels (timing does not depend on the pixel values)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand((n, *INPUT_SHAPE), generator=generator)
    y = torch.randint(0, CLASSES, (n,), generator=generator)
    return x.to(device), y.to(device)
