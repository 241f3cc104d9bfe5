"""Preemption: while a job trains, its job directory holds a recent epoch's training state (`last.ckpt`: weights,
optimizer, schedule, callbacks, random number generators and the order of the next batches); a job run again
starts from the epoch after it and ends with the same weights as an uninterrupted run.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Checkpoint

from pipeline import store
from pipeline.data import TensorBatches


class LastEpoch(Checkpoint):
    """Writes `last.ckpt` (atomically) at the end of a training epoch: every epoch, unless saving costs more than
    1/`budget` of the time since the last save (short epochs are saved less often), and never after the last one.

    A `Checkpoint` callback, so Lightning runs it after the module's own epoch end (the learning-rate schedule has
    stepped) and after validation, early stopping and KeepBest have seen the epoch. The random states (dropout, noise
    regularizers, the shuffling of the training batches) are part of it: without them a resumed run would differ.
    """

    def __init__(self, job_dir: Path, batches: TensorBatches, budget: float = 20.0) -> None:
        self.path, self.batches, self.budget = Path(job_dir) / store.LAST, batches, budget
        self.epochs_done = self.resumed_from = self.trained_here = 0
        self.saved_at, self.save_seconds = time.monotonic(), 0.0

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.epochs_done, self.trained_here = trainer.current_epoch + 1, self.trained_here + 1
        last = trainer.should_stop or self.epochs_done >= (trainer.max_epochs or 0) > 0
        if last or time.monotonic() - self.saved_at < self.budget * self.save_seconds:
            return
        started = time.monotonic()
        store.atomic_write(self.path, lambda tmp: trainer.save_checkpoint(tmp, weights_only=False))
        self.saved_at = time.monotonic()
        self.save_seconds = self.saved_at - started

    def state_dict(self) -> dict[str, Any]:
        return {"epochs_done": self.epochs_done, "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "batches_rng": self.batches.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epochs_done = self.resumed_from = state["epochs_done"]
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.batches.generator.set_state(state["batches_rng"])


def resumable(job_dir: Path) -> Path | None:
    """The job's last-epoch state if an interrupted attempt left one."""
    path = Path(job_dir) / store.LAST
    return path if path.exists() else None
