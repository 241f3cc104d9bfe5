"""What the comparisons run on: the paper's models, MNIST-size random batches, configs composed as the commands
compose them (pipeline.config, pipeline.stages.plan), and the one plain training loop the benchmark needs."""
from __future__ import annotations

import json
from functools import cache
from typing import Any, Callable, Mapping, Sequence

import torch
from omegaconf import DictConfig, open_dict

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


@cache
def job_config(*overrides: str) -> DictConfig:
    """A job's config as `python -m jobs.train <overrides>` composes it (shared: read it, never change it)."""
    from pipeline.config import compose_job, hydra_context

    with hydra_context():
        return compose_job(overrides)


def sweep_config(*overrides: str, grid: Mapping[str, str] | None = None, add: Sequence[str] = ()) -> DictConfig:
    """conf/sweep.yaml as `python -m jobs.sweep <overrides>` composes it; `add` goes to every job after the
    experiment's overrides (`sweep.add`), and `grid` replaces the experiment's grid."""
    from hydra import compose

    from pipeline.config import hydra_context

    with hydra_context():
        cfg = compose("sweep", overrides=[*overrides, f"sweep.add={json.dumps(list(add))}"])
    if grid is not None:
        with open_dict(cfg):
            cfg.sweep.grid = dict(grid)
    return cfg


def plan_sweep(cfg: DictConfig, group: str | None = None, composer: Any = None) -> list:
    """The sweep's jobs, planned as `jobs.sweep` plans them."""
    from pipeline.config import hydra_context
    from pipeline.stages.plan import plan

    with hydra_context():
        return plan(cfg.sweep, group=group, composer=composer)


def optimizer() -> Callable[..., torch.optim.Optimizer]:
    """The default job's optimizer (conf/optimizer), awaiting the parameters."""
    from pipeline.config import instantiate

    return instantiate(job_config().optimizer, "optimizer")


def training_step(model: torch.nn.Module, regularizer: Any, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                  y: torch.Tensor) -> torch.Tensor:
    """What AdversarialModule.training_step does, without Lightning (the loss is checked once per epoch)."""
    optimizer.zero_grad(set_to_none=True)
    loss = regularizer.backward(model, x, y)
    optimizer.step()
    model.constrain()
    return loss


def train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, batch: int = 100,
          regularizer: Any = None) -> torch.nn.Module:
    """The model trained briefly with the default optimizer (batches of `batch`) on the regularizer's objective
    (None: the clean one)."""
    from pipeline.regularizers import Regularizer

    step_with, regularizer = optimizer()(model.parameters()), regularizer or Regularizer()
    generator = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for index in torch.randperm(len(y), generator=generator).split(batch):
            training_step(model.train(), regularizer, step_with, x[index], y[index])
    return model.eval()
