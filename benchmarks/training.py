"""The training comparisons: an adversarial step against a clean one, a Lightning epoch against a plain loop."""
from __future__ import annotations

import copy
import functools
import gc
import math
import statistics
import time
from typing import Any, Callable

import torch

from benchmarks.passes import count_passes
from benchmarks.sizes import ALPHA, ONE_EPS, Sizes
from benchmarks.timing import comparison, interleaved, stats, synchronizer
from benchmarks.workload import job_config, make_batch, make_model, optimizer, training_step


def bench_adversarial_step(sizes: Sizes, device: torch.device, judged: bool) -> list[dict[str, Any]]:
    """Each row also carries the forward and backward passes of either step, counted by hooks on the model."""
    from pipeline.regularizers import Adversarial, Regularizer

    sync, rows = synchronizer(device), []
    for name in sizes.models:
        for batch in sizes.batch_sizes:
            x, y = make_batch(batch, device)
            clean_model, adv_model = make_model(name, device).train(), make_model(name, device).train()
            clean = functools.partial(training_step, clean_model, Regularizer(),
                                      optimizer()(clean_model.parameters()), x, y)
            adversarial = functools.partial(training_step, adv_model, Adversarial(alpha=ALPHA, eps=ONE_EPS),
                                            optimizer()(adv_model.parameters()), x, y)
            passes = {"adversarial": count_passes(adv_model, adversarial), "clean": count_passes(clean_model, clean)}
            t_clean, t_adv = interleaved(clean, adversarial, sizes.repeats, sizes.min_seconds, sync)
            rows.append(comparison(
                "adversarial_step", f"adversarial training step (α = {ALPHA})", name, batch,
                ("adversarial step", t_adv), ("clean step", t_clean), [b / a for a, b in zip(t_clean, t_adv)],
                "adversarial step time / clean step time", "<=", 2.1, judged, passes=passes))
    return rows


def timed_module(seconds: list[float], sync: Callable[[], None], *args: Any) -> Any:
    """AdversarialModule(*args) that appends to `seconds` each training epoch's time, from the start of its
    on_train_epoch_start to the end of its on_train_epoch_end (the batches and the loss check: the span plain_epoch
    times). A callback's on_train_epoch_end would stop before the module's own hook: Lightning calls callbacks first."""
    from pipeline.training.module import AdversarialModule

    class Timed(AdversarialModule):
        def on_train_epoch_start(self) -> None:
            sync()
            self.began = time.perf_counter()
            super().on_train_epoch_start()

        def on_train_epoch_end(self) -> None:
            super().on_train_epoch_end()
            sync()
            seconds.append(time.perf_counter() - self.began)

    return Timed(*args)


def trainer_kwargs(device: torch.device) -> dict[str, Any]:
    """The default job's Trainer (conf/trainer), for one epoch, without a logger (as a job with logger=none)."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(job_config().trainer)
    cfg.pop("_target_")
    cfg.update(max_epochs=1, accelerator="gpu" if device.type == "cuda" else "cpu", logger=False)
    return cfg


def lightning_epoch(base: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int,
                    trainer_args: dict[str, Any], epochs: list[float], sync: Callable[[], None] = lambda: None
                    ) -> float:
    """One Lightning epoch of AdversarialModule (clean objective) over TensorBatches, its time appended to
    `epochs`; returns the seconds of the whole fit."""
    import pytorch_lightning as pl
    from pytorch_lightning.plugins.environments import LightningEnvironment

    from pipeline.data import TensorBatches
    from pipeline.regularizers import Regularizer

    module = timed_module(epochs, sync, copy.deepcopy(base), Regularizer(), optimizer())
    trainer = pl.Trainer(**trainer_args, plugins=[LightningEnvironment()])
    started = time.perf_counter()
    trainer.fit(module, train_dataloaders=TensorBatches(x, y, batch, shuffle=True, seed=0))
    return time.perf_counter() - started


def plain_epoch(base: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int, sync: Callable[[], None]
                ) -> float:
    """The same epoch as a plain loop: same batches, objective, optimizer, constraint, loss check and epoch mean."""
    from pipeline.data import TensorBatches
    from pipeline.regularizers import Regularizer

    model = copy.deepcopy(base).train()
    step_with, regularizer = optimizer()(model.parameters()), Regularizer()
    sync()
    started = time.perf_counter()
    total, count = torch.zeros((), device=x.device), 0
    for xb, yb in TensorBatches(x, y, batch, shuffle=True, seed=0):
        total += training_step(model, regularizer, step_with, xb, yb) * len(yb)
        count += len(yb)
    if not math.isfinite(float(total / count)):
        raise RuntimeError("the plain loop's training loss became NaN or infinite")
    sync()
    return time.perf_counter() - started


def bench_lightning_epoch(sizes: Sizes, device: torch.device, judged: bool) -> list[dict[str, Any]]:
    import warnings

    from pipeline.training.job import quiet_lightning

    quiet_lightning()
    warnings.filterwarnings("ignore", message=".*validation_step.*")
    sync, rows, trainer_args = synchronizer(device), [], trainer_kwargs(device)
    gc.collect()
    gc.freeze()
    deterministic = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)   # what the Trainer's deterministic="warn" sets
    try:
        for name in sizes.models:
            for batch in sizes.batch_sizes:
                base, (x, y) = make_model(name, device), make_batch(sizes.epoch_examples, device)
                lightning_epoch(base, x, y, batch, trainer_args, [], sync)      # warm-up both
                plain_epoch(base, x, y, batch, sync)
                t_plain, t_lightning, fits = [], [], []
                for _ in range(sizes.epoch_repeats):
                    t_plain.append(plain_epoch(base, x, y, batch, sync))
                    fits.append(lightning_epoch(base, x, y, batch, trainer_args, t_lightning, sync))
                rows.append(comparison(
                    "lightning_epoch", "Lightning training epoch, on-device data", name, batch,
                    ("Lightning epoch", t_lightning), ("plain PyTorch loop", t_plain),
                    [b / a for a, b in zip(t_plain, t_lightning)], "Lightning epoch time / plain loop time", "<=",
                    1.15, judged, examples=sizes.epoch_examples, lightning_fit_seconds=stats(fits),
                    fit_overhead_seconds=statistics.median(f - e for f, e in zip(fits, t_lightning))))
    finally:
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
    return rows
