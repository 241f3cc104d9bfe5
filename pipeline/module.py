"""The LightningModule: any Classifier trained on any regularizer's objective.

Optimization is manual because a regularizer owns its backward pass (adversarial training computes ∇θ and ∇ₓ
of the clean cost in one backward); the step, the model's constraint (max-norm) and the schedule follow.
"""
from __future__ import annotations

import math
from typing import Callable

import pytorch_lightning as pl
import torch

from pipeline.errors import ConfigError
from pipeline.models import Classifier
from pipeline.regularizers import Regularizer


class Diverged(ConfigError):
    """The training loss became NaN or infinite: a setting (usually the learning rate) is too aggressive."""


class AdversarialModule(pl.LightningModule):
    def __init__(self, model: Classifier, regularizer: Regularizer,
                 optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None) -> None:
        super().__init__()
        self.model, self.regularizer = model, regularizer
        self.make_optimizer, self.make_scheduler = optimizer, scheduler
        self.automatic_optimization = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def configure_optimizers(self):
        optimizer = self.make_optimizer(self.model.parameters())
        if self.make_scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.make_scheduler(optimizer), "interval": "epoch"}}

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_index: int) -> torch.Tensor:
        x, y = batch
        optimizer = self.optimizers()
        optimizer.zero_grad(set_to_none=True)
        loss = self.regularizer.backward(self.model, x, y)
        if not math.isfinite(loss.item()):
            raise Diverged(f"training loss became {loss.item()} at epoch {self.current_epoch}, "
                           f"step {self.global_step}; lower optimizer.lr (now {optimizer.param_groups[0]['lr']:g})")
        optimizer.step()
        self.model.constrain()
        # Summed here and logged once per epoch: self.log on every step costs about a millisecond.
        self.epoch_loss = self.epoch_loss + loss * len(y)
        self.epoch_examples += len(y)
        return loss

    def on_train_epoch_start(self) -> None:
        self.epoch_loss, self.epoch_examples = torch.zeros((), device=self.device), 0

    def on_train_epoch_end(self) -> None:
        self.log("train/loss", self.epoch_loss / max(self.epoch_examples, 1))
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], split: str) -> None:
        x, y = batch
        logits = self.model(x)
        self.log(f"{split}/loss", self.model.cost(logits, y), batch_size=len(y))
        self.log(f"{split}/error", (logits.argmax(dim=1) != y).float().mean(), batch_size=len(y), prog_bar=True)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_index: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_index: int) -> None:
        self._evaluate(batch, "test")
