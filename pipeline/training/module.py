"""The LightningModule: any model (pipeline.models.adapter) trained on any regularizer's objective.

Optimization is manual because a regularizer owns its backward pass (adversarial training computes ∇θ and ∇ₓ
of the clean cost in one backward); the step, the model's constraint (max-norm) and the schedule follow.
"""
from __future__ import annotations

import copy
import math
from typing import Callable

import pytorch_lightning as pl
import torch

from pipeline.models import adapter
from pipeline.attacks import Clip, fgsm
from pipeline.devices import full_float32
from pipeline.errors import ConfigError
from pipeline.regularizers import Regularizer


class Diverged(ConfigError):
    """The training loss became NaN or infinite: a setting (usually the learning rate) is too aggressive."""


class AdversarialModule(pl.LightningModule):
    def __init__(self, model: torch.nn.Module, regularizer: Regularizer,
                 optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
                 val_attack: tuple[float, Clip] | None = None) -> None:
        """val_attack=(ε, clip) also logs val/fgsm_error, the FGSM error on the validation set (early stopping)."""
        super().__init__()
        self.model, self.regularizer, self.val_attack = model, regularizer, val_attack
        self.make_optimizer, self.make_scheduler = optimizer, scheduler
        self.automatic_optimization = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def configure_optimizers(self):
        optimizer = self.make_optimizer(self.model.parameters())
        if self.make_scheduler is None:
            return optimizer
        scheduler = self.make_scheduler(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_index: int) -> None:
        x, y = batch
        optimizer = self.optimizers()
        optimizer.zero_grad(set_to_none=True)
        loss = self.regularizer.backward(self.model, x, y)
        optimizer.step()
        adapter.constrain(self.model)
        # Summed on the device and checked and logged once per epoch: `loss.item()` or `self.log` on every step
        # would cost a device sync or about a millisecond each.
        self.epoch_loss = self.epoch_loss + loss * len(y)
        self.epoch_examples += len(y)

    def on_train_epoch_start(self) -> None:
        self.epoch_loss, self.epoch_examples = torch.zeros((), device=self.device), 0

    def on_train_epoch_end(self) -> None:
        loss = self.epoch_loss / max(self.epoch_examples, 1)
        if not math.isfinite(loss.item()):
            lr = self.optimizers().param_groups[0]["lr"]
            raise Diverged(f"training loss became {loss.item()} in epoch {self.current_epoch}; "
                           f"lower optimizer.lr (now {lr:g})")
        self.log("train/loss", loss)
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_index: int) -> None:
        x, y = batch
        logits = self.model(x)
        self.log("val/loss", adapter.cost(self.model, logits, y), batch_size=len(y))
        self.log("val/error", (logits.argmax(dim=1) != y).float().mean(), batch_size=len(y), prog_bar=True)
        if self.val_attack is not None:
            with full_float32():
                fooled = self.model(fgsm(self.model, x, y, *self.val_attack)).argmax(dim=1) != y
            self.log("val/fgsm_error", fooled.float().mean(), batch_size=len(y))


class KeepBest(pl.Callback):
    """Tracks a validation metric each epoch and, when training ends, restores the weights of its best (lowest)
    epoch: with EarlyStopping, training runs `patience` epochs past the best one and the best is kept, as pylearn2's
    MonitorBasedSaveBest does."""

    def __init__(self, monitor: str) -> None:
        self.monitor, self.history, self.best_epoch, self.best_state = monitor, [], None, None

    def on_validation_end(self, trainer: pl.Trainer, module: AdversarialModule) -> None:
        if trainer.sanity_checking:
            return
        self.history.append(float(trainer.callback_metrics[self.monitor]))
        if self.best_epoch is None or self.history[-1] < self.history[self.best_epoch]:
            self.best_epoch, self.best_state = len(self.history) - 1, copy.deepcopy(module.model.state_dict())

    def on_fit_end(self, trainer: pl.Trainer, module: AdversarialModule) -> None:
        if self.best_state is not None:
            module.model.load_state_dict(self.best_state)

    def summary(self) -> dict:
        return {"monitor": self.monitor, "best_epoch": self.best_epoch, "history": self.history}

    def state_dict(self) -> dict:   # saved in last.ckpt: a resumed job keeps its best epoch
        return {"history": self.history, "best_epoch": self.best_epoch, "best_state": self.best_state}

    def load_state_dict(self, state: dict) -> None:
        self.history, self.best_epoch, self.best_state = state["history"], state["best_epoch"], state["best_state"]
