"""One training job, end to end: data → model + regularizer → Trainer.fit → attack curve → job directory.

`run_job` is the single code path behind `jobs.train`, each task of a sweep and each SLURM array task.
"""
from __future__ import annotations

import functools
import logging
import platform
import signal
import socket
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from pipeline import pretrained, provenance, store
from pipeline.models import adapter, model_file
from pipeline.attacks import check_eps, clean_scores
from pipeline.config import instantiate
from pipeline.devices import (ATTACK_TF32, check_trainer, describe, full_float32, job_accelerator, task_device,
                              tf32_flags)
from pipeline.errors import ConfigError
from pipeline.models.build import build_model, model_name
from pipeline.models.checks import check_model
from pipeline.tracking import JobLoggers


@functools.cache
def versions() -> dict[str, str]:
    """From the installed packages' metadata: importing wandb only to read its version would slow every job's start."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(package: str) -> str | None:   # wandb is optional with logger=none (e.g. the GPU check)
        try:
            return version(package)
        except PackageNotFoundError:
            return None

    return {"python": platform.python_version(), "torch": torch.__version__,
            "pytorch_lightning": installed("pytorch-lightning"), "hydra": installed("hydra-core"),
            "wandb": installed("wandb")}


def place(trainer: Any, data: Any, model: torch.nn.Module) -> torch.device:
    """Data and model onto the Trainer's device (Lightning's choice, not a guess beside it), then the model's
    data-dependent start, where both now are."""
    device = trainer.strategy.root_device
    data.to(device)
    model.to(device)
    adapter.initialize(model, *data.splits["train"])
    return device


def build(cfg: DictConfig):
    """The data module, model, regularizer and attack of a job config (validated as they are built, before any
    training, so that a bad value costs nothing)."""
    for eps in cfg.eval.epsilons:
        check_eps(eps, "eval.epsilons")
    check_trainer(cfg.trainer)
    data = instantiate(cfg.data, "data", seed=cfg.seed)
    data.setup()
    model = build_model(cfg.model, data.input_shape, data.num_classes)
    check_model(model, model_name(cfg.model), data.splits["train"][0], data.num_classes,
                bool(cfg.model.get("stochastic", False)))
    regularizer = instantiate(cfg.regularizer, "regularizer")
    regularizer.check(model)
    attack = instantiate(cfg.attack, "attack")
    return data, model, regularizer, attack


MONITORS = ("val/error", "val/loss", "val/fgsm_error")   # what the training module logs on the validation set


def early_stopping(cfg: DictConfig, clip: Any) -> tuple[list, tuple[float, Any] | None]:
    """The callbacks (EarlyStopping, then KeepBest) and the validation attack of `early_stopping` (none when it
    is null)."""
    from pytorch_lightning.callbacks import EarlyStopping

    from pipeline.training.module import KeepBest

    stopping = cfg.get("early_stopping")
    if not stopping:
        return [], None
    if stopping.monitor not in MONITORS:
        raise ConfigError(f"early_stopping.monitor={stopping.monitor!r}; use one of {', '.join(MONITORS)}")
    if not stopping.patience >= 1:
        raise ConfigError(f"early_stopping.patience={stopping.patience} must be ≥ 1 (epochs without improvement)")
    val_attack = (check_eps(stopping.eps, "early_stopping.eps"), clip) if stopping.monitor == "val/fgsm_error" else None
    callbacks = [EarlyStopping(stopping.monitor, patience=stopping.patience, mode="min"), KeepBest(stopping.monitor)]
    return callbacks, val_attack


def configured_callbacks(cfg: DictConfig, loggers: list) -> list:
    """The callbacks the `callbacks` group adds (`callbacks=[lr_monitor]`, or `+callbacks.<name>={_target_: ...}`),
    besides the built-in ones (early stopping, keep-best, resume)."""
    from pytorch_lightning.callbacks import LearningRateMonitor

    callbacks = [instantiate(entry, f"callbacks.{name}") for name, entry in (cfg.get("callbacks") or {}).items()]
    if not loggers and any(isinstance(callback, LearningRateMonitor) for callback in callbacks):
        raise ConfigError("callbacks=[lr_monitor] logs the learning rate to a logger, and this job has none; "
                          "choose logger=wandb or logger=csv")
    return callbacks


def quiet_lightning() -> None:
    """Keep job logs to what matters: Lightning's banners and hints repeat in every job of a sweep."""
    logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)
    for pattern in (".*srun.*", ".*LeafSpec.*", ".*does not have many workers.*", ".*litlogger.*"):
        warnings.filterwarnings("ignore", message=pattern)


def measurements(cfg: DictConfig, model: torch.nn.Module, data: Any, attack: Any) -> dict[str, Any]:
    """The model's errors on each split and its attack curve on the test set (metrics.json's measurements)."""
    x, y = data.splits["test"]
    with full_float32():
        curve = attack.curve(model, x, y, list(cfg.eval.epsilons), batch_size=cfg.eval.batch_size)
    clean_error, clean_confidence = clean_scores(model, x, y, cfg.eval.batch_size)
    return {"clean_error": clean_error, "clean_confidence": clean_confidence,
            "train_error": clean_scores(model, *data.splits["train"], cfg.eval.batch_size)[0],
            "val_error": clean_scores(model, *data.splits["val"], cfg.eval.batch_size)[0],
            "attack": {"name": attack.name, "clip": list(attack.clip) if attack.clip else None,
                       "craft_with": attack.craft_with},
            "curve": curve.rows()}


def evaluate_pretrained(cfg: DictConfig, job_dir: Path, data: Any, model: torch.nn.Module, attack: Any,
                        record: dict[str, Any]) -> dict[str, Any]:
    """A model trained elsewhere (model=pretrained): no training; the same job directory as a trained job, with a
    copy of its file."""
    device = task_device()
    data.to(device)
    model = model.to(device).eval()
    spec = pretrained.keep(job_dir, OmegaConf.to_container(cfg.model, resolve=True))
    checkpoint = (store.save_checkpoint(job_dir, model, spec, data.input_shape, data.num_classes) if spec
                  else store.checkpoint_entry(job_dir))   # a job directory's checkpoint, copied as it is
    metrics = {**record, **measurements(cfg, model, data, attack), "epochs": 0, "train_seconds": 0.0,
               "pretrained": {"path": str(model_file.source(cfg.model.path)),
                              "sha256": model_file.fingerprint(model_file.source(cfg.model.path))},
               **describe(device), "tf32": {"training": None, "attack": ATTACK_TF32}, "checkpoint": checkpoint}
    store.write_metrics(job_dir, metrics)
    return metrics


@dataclass
class Fitted:
    """What training leaves for the results: the trained model on its device, how long and how far it trained."""
    model: torch.nn.Module
    device: torch.device
    epochs: int
    seconds: float
    last: Any            # resume.LastEpoch: where this attempt started, what it trained, its last.ckpt
    callbacks: list      # early stopping and the best-epoch keeper, when configured


def run_job(cfg: DictConfig, job_dir: Path, run_name: str | None = None, extra: dict[str, Any] | None = None
            ) -> dict[str, Any]:
    """Train and evaluate one job; its results land in job_dir (see pipeline.store). Failures leave failure.json.
    An attempt that was interrupted (preemption, a lost node) left last.ckpt: this one goes on from there.

    `extra` entries (e.g. the Ray node) are recorded in metrics.json.
    """
    import pytorch_lightning as pl
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    from pipeline.training.resume import resumable

    began = time.time()
    quiet_lightning()
    job_dir = Path(job_dir)
    store.write_config(job_dir, cfg)
    resume_from = resumable(job_dir)
    attempt = store.start_attempt(job_dir, resumes=resume_from is not None, **(extra or {}))
    loggers = JobLoggers()
    try:
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        data, model, regularizer, attack = build(cfg)
        record = job_record(cfg, job_dir, began, attempt, extra)
        if model_file.is_pretrained(cfg.model):   # trained elsewhere: evaluated as it is
            return evaluate_pretrained(cfg, job_dir, data, model, attack, record)
        # Each attempt is its own W&B run: a retried, resumed or forced job never writes twice under one run id.
        logger = loggers.start(cfg.get("logger"), job_dir, run_name or record["job_id"],
                               f"{record['job_id']}-{attempt}", OmegaConf.to_container(cfg, resolve=True))
        fitted = fit(cfg, job_dir, data, model, regularizer, attack, logger, resume_from)
        return save_results(cfg, job_dir, data, attack, fitted, record, loggers)
    except SIGTERMException:   # SLURM's time limit or preemption: Lightning stopped at a batch boundary
        store.write_failure(job_dir, "interrupted by SIGTERM; run it again to resume from its last epoch")
        raise SystemExit(128 + signal.SIGTERM) from None   # not 0: the job did not finish
    except Exception as error:
        store.write_failure(job_dir, f"{type(error).__name__}: {error}", traceback.format_exc()[-4000:])
        raise
    finally:
        loggers.finish()


def job_record(cfg: DictConfig, job_dir: Path, began: float, attempt: int, extra: dict[str, Any] | None
               ) -> dict[str, Any]:
    """What metrics.json says of the attempt itself: which job, when, where, with which code and packages."""
    return {"job_id": cfg.get("job_id") or job_dir.name, "seed": cfg.seed, "started": began, "attempt": attempt,
            "choices": OmegaConf.to_container(cfg.choices) if cfg.get("choices") else {},
            "node": socket.gethostname(), "versions": versions(), "code": provenance.code(), **(extra or {})}


def fit(cfg: DictConfig, job_dir: Path, data: Any, model: torch.nn.Module, regularizer: Any, attack: Any,
        logger: Any, resume_from: Path | None) -> Fitted:
    """Lightning's fit of the job's module, from last.ckpt when an earlier attempt left one."""
    from pytorch_lightning.plugins.environments import LightningEnvironment

    from pipeline.training.module import AdversarialModule
    from pipeline.training.resume import LastEpoch

    callbacks, val_attack = early_stopping(cfg, attack.clip)
    scheduler = instantiate(cfg.scheduler, "scheduler") if cfg.get("scheduler") else None
    module = AdversarialModule(model, regularizer, instantiate(cfg.optimizer, "optimizer"), scheduler, val_attack)
    # One job is one process: never let Lightning read SLURM's or torchrun's world size.
    # inference_mode=False: validation runs under no_grad instead, which FGSM's enable_grad can lift.
    # enable_checkpointing=True admits LastEpoch; with a checkpoint callback present Lightning adds none of its own.
    last = LastEpoch(job_dir, data.train_dataloader())
    trainer = instantiate(cfg.trainer, "trainer", logger=logger or False, default_root_dir=str(job_dir),
                          plugins=[LightningEnvironment()], enable_checkpointing=True,
                          callbacks=[*callbacks, *configured_callbacks(cfg, logger), last],
                          inference_mode=val_attack is None,
                          accelerator=job_accelerator(cfg.trainer.get("accelerator", "auto")))
    device = place(trainer, data, model)
    batches = last.batches = data.train_dataloader()   # over the tensors on the device now
    started = time.perf_counter()
    trainer.fit(module, batches, data.val_dataloader(), ckpt_path=resume_from)
    return Fitted(module.model.to(device).eval(), device, trainer.current_epoch, time.perf_counter() - started,
                  last, callbacks)


def save_results(cfg: DictConfig, job_dir: Path, data: Any, attack: Any, fitted: Fitted, record: dict[str, Any],
                 loggers: JobLoggers) -> dict[str, Any]:
    """The trained model's measurements, its checkpoint and metrics.json (the job is complete once it exists)."""
    measured = measurements(cfg, fitted.model, data, attack)
    checkpoint = store.save_checkpoint(job_dir, fitted.model, cfg.model, data.input_shape, data.num_classes)
    metrics = {
        **record, **measured, "epochs": fitted.epochs, "train_seconds": fitted.seconds,
        "resumed_from_epoch": fitted.last.resumed_from, "epochs_this_attempt": fitted.last.trained_here,
        "early_stopping": fitted.callbacks[-1].summary() if fitted.callbacks else None,
        **describe(fitted.device), "tf32": {"training": tf32_flags(), "attack": ATTACK_TF32}, "checkpoint": checkpoint,
    }
    loggers.log_results(measured["curve"], {k: metrics[k] for k in ("clean_error", "train_error", "val_error")},
                        job_dir / store.CHECKPOINT)
    store.write_metrics(job_dir, metrics)
    fitted.last.path.unlink(missing_ok=True)   # complete: nothing left to resume
    return metrics
