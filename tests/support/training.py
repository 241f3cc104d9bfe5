"""Small models trained for tests: plain SGD on a regularizer's objective, or a few Lightning steps of a job."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from tests.support.configs import compose


def train_sgd(build: Callable[[], torch.nn.Module], x: torch.Tensor, y: torch.Tensor, regularizer: Any, epochs: int,
              seed: int = 0) -> torch.nn.Module:
    """The model `build` makes, trained with plain SGD (lr .1, momentum .5, batches of 100) on the regularizer's
    objective, with the model's constraint after each step, as a job's training step does. torch is seeded before
    the model is built, so its initial weights never depend on what ran before."""
    torch.manual_seed(seed)
    model = build()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    generator = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for index in torch.randperm(len(y), generator=generator).split(100):
            optimizer.zero_grad()
            regularizer.backward(model, x[index], y[index])
            optimizer.step()
            if hasattr(model, "constrain"):
                model.constrain()
    model.zero_grad(set_to_none=True)
    return model.eval()


def train_briefly(tmp_path: Path, *overrides: str, batches: int | None = None) -> dict[str, Any]:
    """Build a job's data, model and regularizer from the config and train it a few steps on the CPU with Lightning
    (the module and Trainer of a real job). Returns the model, its parameters before training, and the last loss."""
    import pytorch_lightning as pl

    from pipeline.config import instantiate
    from pipeline.training.job import build, quiet_lightning
    from pipeline.training.module import AdversarialModule

    quiet_lightning()
    cfg = compose("logger=none", "trainer.max_epochs=1", "data.limit=200", *overrides)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    data, model, regularizer, _ = build(cfg)
    model.initialize(*data.splits["train"])
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    module = AdversarialModule(model, regularizer, instantiate(cfg.optimizer, "optimizer"))
    trainer = instantiate(cfg.trainer, "trainer", logger=False, default_root_dir=str(tmp_path), accelerator="cpu",
                          limit_train_batches=batches or 1.0, limit_val_batches=1)
    trainer.fit(module, data.train_dataloader(), data.val_dataloader())
    return {"model": model, "before": before, "loss": float(trainer.callback_metrics["train/loss"]),
            "cfg": cfg, "data": data, "steps": trainer.global_step}
