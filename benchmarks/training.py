"""The training comparisons: an adversarial step against a clean one, a Lightning epoch against a plain loop."""
from __future__ import annotations

import copy
import functools
import gc
import math
import statistics
import time
from typing import Any, Callable, Sequence

import torch

from benchmarks.passes import count_passes
from benchmarks.sizes import ALPHA, ONE_EPS, SGD, Sizes
from benchmarks.timing import comparison, interleaved, stats, synchronizer
from benchmarks.workload import make_batch, make_model


def training_step(model: torch.nn.Module, regularizer, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                  y: torch.Tensor) -> torch.Tensor:
    """What AdversarialModule.training_step does, without Lightning (the loss is checked once per epoch)."""
    optimizer.zero_grad(set_to_none=True)
    loss = regularizer.backward(model, x, y)
    optimizer.step()
    model.constrain()
    return loss


def bench_adversarial_step(sizes: Sizes, device: torch.device, judged: bool
                           ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from pipeline.regularizers import Adversarial, Regularizer

    sync, rows, counts = synchronizer(device), [], {}
    for name in sizes.models:
        for batch in sizes.batch_sizes:
            x, y = make_batch(batch, device)
            clean_model, adv_model = make_model(name, device).train(), make_model(name, device).train()
            clean = functools.partial(training_step, clean_model, Regularizer(),
                                      torch.optim.SGD(clean_model.parameters(), **SGD), x, y)
            adversarial = functools.partial(training_step, adv_model, Adversarial(alpha=ALPHA, eps=ONE_EPS),
                                            torch.optim.SGD(adv_model.parameters(), **SGD), x, y)
            counts.setdefault(name, {"adversarial": count_passes(adv_model, adversarial),
                                     "clean": count_passes(clean_model, clean)})
            t_clean, t_adv = interleaved(clean, adversarial, sizes.repeats, sizes.min_seconds, sync)
            rows.append(comparison(
                "adversarial_step", f"adversarial training step (α = {ALPHA})", name, batch,
                ("adversarial step", t_adv), ("clean step", t_clean), [b / a for a, b in zip(t_clean, t_adv)],
                "adversarial step time / clean step time", "<=", 2.1, judged))
    ok = all(c["adversarial"] == {"forwards": 2, "backwards": 2} for c in counts.values())
    return rows, {"per_model": counts, "expected": {"forwards": 2, "backwards": 2}, "ok": ok}


class EpochTimer:
    """Seconds of each Lightning training epoch, from the module's on_train_epoch_start to the end of its
    on_train_epoch_end (the batches and the loss check), the span plain_epoch times. A callback's
    on_train_epoch_end would stop before the module's own hook: Lightning calls callbacks first."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.started, self.sync = 0.0, (lambda: None)

    def start(self) -> None:
        self.sync()
        self.started = time.perf_counter()

    def stop(self) -> None:
        self.sync()
        self.seconds.append(time.perf_counter() - self.started)


def timed_module(timer: EpochTimer, *args: Any) -> Any:
    """AdversarialModule(*args) whose epoch hooks start and stop `timer` around its own."""
    from pipeline.module import AdversarialModule

    class Timed(AdversarialModule):
        def on_train_epoch_start(self) -> None:
            timer.start()
            super().on_train_epoch_start()

        def on_train_epoch_end(self) -> None:
            super().on_train_epoch_end()
            timer.stop()

    return Timed(*args)


def trainer_kwargs(device: torch.device) -> dict[str, Any]:
    """conf/trainer/default.yaml, for one epoch, without a logger (as a job with logger=none)."""
    from omegaconf import OmegaConf

    from pipeline.config import CONF_DIR

    cfg = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "trainer" / "default.yaml"))
    cfg.pop("_target_")
    cfg.update(max_epochs=1, accelerator="gpu" if device.type == "cuda" else "cpu", logger=False)
    return cfg


def lightning_epoch(base: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int,
                    trainer_args: dict[str, Any], timer: EpochTimer) -> float:
    """One Lightning epoch of AdversarialModule (clean objective, SGD) over TensorBatches; returns fit seconds."""
    import pytorch_lightning as pl
    from pytorch_lightning.plugins.environments import LightningEnvironment

    from pipeline.data import TensorBatches
    from pipeline.regularizers import Regularizer

    module = timed_module(timer, copy.deepcopy(base), Regularizer(), functools.partial(torch.optim.SGD, **SGD))
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
    optimizer, regularizer = torch.optim.SGD(model.parameters(), **SGD), Regularizer()
    sync()
    started = time.perf_counter()
    total, count = torch.zeros((), device=x.device), 0
    for xb, yb in TensorBatches(x, y, batch, shuffle=True, seed=0):
        loss = training_step(model, regularizer, optimizer, xb, yb)
        total += loss * len(yb)
        count += len(yb)
    if not math.isfinite(float(total / count)):
        raise RuntimeError("the plain loop's training loss became NaN or infinite")
    sync()
    return time.perf_counter() - started


def bench_lightning_epoch(sizes: Sizes, device: torch.device, judged: bool, examples: int | None = None,
                          models: Sequence[str] | None = None, batch_sizes: Sequence[int] | None = None,
                          repeats: int | None = None) -> list[dict[str, Any]]:
    import warnings

    from pipeline.job import quiet_lightning

    quiet_lightning()
    warnings.filterwarnings("ignore", message=".*validation_step.*")
    sync, rows, trainer_args = synchronizer(device), [], trainer_kwargs(device)
    examples = examples or sizes.epoch_examples
    gc.collect()
    gc.freeze()
    deterministic = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)   # what the Trainer's deterministic="warn" sets
    try:
        for name in models or sizes.models:
            for batch in batch_sizes or sizes.batch_sizes:
                base, (x, y) = make_model(name, device), make_batch(examples, device)
                timer = EpochTimer()
                timer.sync = sync
                lightning_epoch(base, x, y, batch, trainer_args, timer)      # warm-up both
                plain_epoch(base, x, y, batch, sync)
                timer.seconds.clear()
                t_plain, fits = [], []
                for _ in range(repeats or sizes.epoch_repeats):
                    t_plain.append(plain_epoch(base, x, y, batch, sync))
                    fits.append(lightning_epoch(base, x, y, batch, trainer_args, timer))
                t_lightning = list(timer.seconds)
                rows.append(comparison(
                    "lightning_epoch", "Lightning training epoch, on-device data", name, batch,
                    ("Lightning epoch", t_lightning), ("plain PyTorch loop", t_plain),
                    [b / a for a, b in zip(t_plain, t_lightning)], "Lightning epoch time / plain loop time", "<=",
                    1.15, judged, examples=examples, lightning_fit_seconds=stats(fits),
                    fit_overhead_seconds=statistics.median(f - e for f, e in zip(fits, t_lightning))))
    finally:
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
    return rows
