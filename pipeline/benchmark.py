"""The performance benchmark (`python -m jobs.benchmark`): our fast paths against their baselines, in one process.

Every timed comparison runs its two sides interleaved (A, B, A, B, ...) so that a change of machine load hits both;
each timed sample repeats the operation until it lasts at least `min_seconds`, and the reported figure is the median
over the samples of the per-pair ratio, with its interquartile range and min/max. Counts (input gradients of the
transfer stage, forwards and backwards of an adversarial training step) are measured with hooks on the models,
not taken from the code under test.

    comparison                    measured / reference                                     target
    fgsm_curve                    torchattacks FGSM once per ε + a scoring forward / ours  ≥ 3× faster
    fgsm                          torchattacks FGSM / ours (one ε)                         ≥ 1.0×
    adversarial_step              adversarial step (α = 0.5) / clean step                  ≤ 2.1×
    lightning_epoch               Lightning epoch / plain PyTorch loop, same work          ≤ 1.15×
    sweep                         (Σ job time / slots) / wall time, two-node Ray cluster   ≥ 85 %
    transfer                      input gradients taken for M models and K ε               = M
    main_job                      wall time of `python -m jobs.sweep`                      ≤ 5 min

`--quick` shrinks everything for CI and judges no timing (only the counts). `--device cuda` adds the GPU extras:
a maxout epoch over 60,000 × 784 tensors and jobs per GPU with fractional packing.
"""
from __future__ import annotations

import argparse
import copy
import functools
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from pipeline.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
INPUT_SHAPE, CLASSES = (1, 28, 28), 10
EPSILONS = [round(0.03 * k, 2) for k in range(1, 11)]   # 10 values, 0.03 .. 0.30 (none is 0: no free ε for either side)
ONE_EPS = 0.25
ALPHA = 0.5
SGD = {"lr": 0.1, "momentum": 0.5}                      # conf/optimizer/sgd.yaml
MAIN_JOB_LIMIT_S = 300.0
STAGES = ("fgsm_curve", "fgsm", "adversarial_step", "lightning_epoch", "transfer", "sweep", "main_job", "gpu")


@dataclass(frozen=True)
class Sizes:
    models: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    repeats: int               # interleaved A/B pairs per comparison
    min_seconds: float         # each timed sample repeats the operation until it lasts this long
    epoch_examples: int        # examples per training epoch (Lightning vs plain loop)
    epoch_repeats: int
    transfer_models: int       # M
    transfer_epsilons: int     # K
    transfer_examples: int     # test-set size (fits one batch of 1,000)
    sweep_jobs: int
    sweep_epochs: int
    gpu_epoch_examples: int
    gpu_pack_jobs: int
    gpu_pack: tuple[int, ...]  # jobs per GPU


QUICK = Sizes(models=("softmax", "maxout"), batch_sizes=(100,), repeats=2, min_seconds=0.0, epoch_examples=200,
              epoch_repeats=1, transfer_models=3, transfer_epsilons=4, transfer_examples=200, sweep_jobs=4,
              sweep_epochs=1, gpu_epoch_examples=6_000, gpu_pack_jobs=4, gpu_pack=(1, 4))
FULL = Sizes(models=("softmax", "maxout"), batch_sizes=(100, 1000), repeats=9, min_seconds=0.2, epoch_examples=10_000,
             epoch_repeats=5, transfer_models=4, transfer_epsilons=10, transfer_examples=1000, sweep_jobs=8,
             sweep_epochs=2, gpu_epoch_examples=60_000, gpu_pack_jobs=8, gpu_pack=(1, 4, 8))


# -- timing ---------------------------------------------------------------------------------------------------------

def stats(values: Sequence[float]) -> dict[str, float]:
    """Median, quartiles and range of a sample."""
    values = sorted(values)
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else (values[0],) * 3
    return {"median": statistics.median(values), "q1": q1, "q3": q3, "min": values[0], "max": values[-1],
            "n": len(values)}


def synchronizer(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def timed(fn: Callable[[], Any], calls: int, sync: Callable[[], None]) -> float:
    """Seconds per call of `calls` back-to-back calls (device work included), with the garbage collector paused."""
    gc.disable()
    try:
        sync()
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        return (time.perf_counter() - started) / calls
    finally:
        gc.enable()


def calls_for(fn: Callable[[], Any], min_seconds: float, sync: Callable[[], None], warmup: int = 2) -> int:
    """How many calls make a sample of at least `min_seconds` (after `warmup` untimed calls)."""
    for _ in range(warmup):
        fn()
    once = timed(fn, 1, sync)
    if once < min_seconds / 10:   # too short to time alone: time a few
        once = timed(fn, 10, sync)
    return max(1, math.ceil(min_seconds / max(once, 1e-9)))


def interleaved(a: Callable[[], Any], b: Callable[[], Any], repeats: int, min_seconds: float,
                sync: Callable[[], None]) -> tuple[list[float], list[float]]:
    """Per-call seconds of A and B, sampled alternately: A, B, A, B, ..."""
    gc.collect()
    gc.freeze()   # what exists now (modules, models, data) is never scanned again: collections stay cheap
    calls_a, calls_b = calls_for(a, min_seconds, sync), calls_for(b, min_seconds, sync)
    times_a, times_b = [], []
    for _ in range(repeats):
        times_a.append(timed(a, calls_a, sync))
        times_b.append(timed(b, calls_b, sync))
    return times_a, times_b


def judge(value: float, op: str, target: float) -> bool:
    return value >= target if op == ">=" else value <= target


def comparison(cid: str, title: str, model: str | None, batch: int | None, measured: tuple[str, list[float]],
               reference: tuple[str, list[float]], ratios: list[float], ratio_definition: str, op: str,
               target: float, judged: bool, **extra: Any) -> dict[str, Any]:
    ratio = stats(ratios)
    return {"id": cid, "title": title, "model": model, "batch_size": batch,
            "measured": {"label": measured[0], "seconds": stats(measured[1])},
            "reference": {"label": reference[0], "seconds": stats(reference[1])},
            "ratio": ratio, "ratio_definition": ratio_definition, "target": {"op": op, "value": target},
            "judged": judged, "passed": judge(ratio["median"], op, target) if judged else None, **extra}


# -- models, data, hooks --------------------------------------------------------------------------------------------

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


class PassCounter:
    """Counts forward passes of a model (forward hook) and backward passes through its output (tensor hook)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.forwards = self.backwards = 0
        self.handle = model.register_forward_hook(self._forward)

    def _forward(self, module, inputs, output) -> None:
        self.forwards += 1
        if isinstance(output, torch.Tensor) and output.requires_grad:
            output.register_hook(self._backward)

    def _backward(self, grad: torch.Tensor) -> None:
        self.backwards += 1

    def close(self) -> None:
        self.handle.remove()

    def __enter__(self) -> "PassCounter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def count_passes(model: torch.nn.Module, fn: Callable[[], Any]) -> dict[str, int]:
    with PassCounter(model) as counter:
        fn()
    return {"forwards": counter.forwards, "backwards": counter.backwards}


def torchattacks_or_none():
    try:
        import torchattacks
    except ImportError:
        return None
    return torchattacks


def baseline_curve(model: torch.nn.Module, attacks: list, x: torch.Tensor, y: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The torchattacks way to an FGSM curve: one attack per ε, then score its examples (confidence, prediction)."""
    confidences, predictions = [], []
    for attack in attacks:
        adv = attack(x, y)
        with torch.no_grad():
            confidence, predicted = model(adv).softmax(dim=-1).max(dim=-1)
        confidences.append(confidence)
        predictions.append(predicted)
    return torch.stack(confidences), torch.stack(predictions)


# -- the comparisons ------------------------------------------------------------------------------------------------

def bench_fgsm_curve(sizes: Sizes, device: torch.device, judged: bool) -> list[dict[str, Any]]:
    from pipeline.attacks import fgsm_curve

    torchattacks = torchattacks_or_none()
    if torchattacks is None:
        return [skipped("fgsm_curve", "torchattacks is not installed (pip install -e '.[dev]')")]
    sync, rows = synchronizer(device), []
    for name in sizes.models:
        for batch in sizes.batch_sizes:
            model = make_model(name, device).eval()
            x, y = make_batch(batch, device)
            attacks = [torchattacks.FGSM(model, eps=eps) for eps in EPSILONS]
            ours = functools.partial(fgsm_curve, model, x, y, EPSILONS)
            theirs = functools.partial(baseline_curve, model, attacks, x, y)
            curve = ours()
            _, predicted = theirs()
            agree = float((curve.predictions == predicted).float().mean())   # same attack, same predictions
            work = {"ours": count_passes(model, ours), "torchattacks": count_passes(model, theirs)}
            t_ours, t_theirs = interleaved(ours, theirs, sizes.repeats, sizes.min_seconds, sync)
            rows.append(comparison(
                "fgsm_curve", f"FGSM robustness curve, {len(EPSILONS)} ε", name, batch,
                ("ours: fgsm_curve", t_ours), ("torchattacks FGSM per ε + scoring forward", t_theirs),
                [b / a for a, b in zip(t_ours, t_theirs)], "torchattacks time / our time", ">=", 3.0, judged,
                work=work, prediction_agreement=agree, epsilons=EPSILONS))
    return rows


def bench_fgsm(sizes: Sizes, device: torch.device, judged: bool) -> list[dict[str, Any]]:
    from pipeline.attacks import fgsm

    torchattacks = torchattacks_or_none()
    if torchattacks is None:
        return [skipped("fgsm", "torchattacks is not installed (pip install -e '.[dev]')")]
    sync, rows = synchronizer(device), []
    for name in sizes.models:
        for batch in sizes.batch_sizes:
            model = make_model(name, device).eval()
            x, y = make_batch(batch, device)
            attack = torchattacks.FGSM(model, eps=ONE_EPS)
            ours = functools.partial(fgsm, model, x, y, ONE_EPS)
            theirs = functools.partial(attack, x, y)
            same = float((ours() == theirs()).float().mean())
            t_ours, t_theirs = interleaved(ours, theirs, sizes.repeats, sizes.min_seconds, sync)
            rows.append(comparison(
                "fgsm", f"FGSM, one ε ({ONE_EPS})", name, batch, ("ours: fgsm", t_ours),
                ("torchattacks FGSM", t_theirs), [b / a for a, b in zip(t_ours, t_theirs)],
                "torchattacks time / our time", ">=", 1.0, judged, identical_pixels=same))
    return rows


def training_step(model: torch.nn.Module, regularizer, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                  y: torch.Tensor) -> torch.Tensor:
    """What AdversarialModule.training_step does, without Lightning."""
    optimizer.zero_grad(set_to_none=True)
    loss = regularizer.backward(model, x, y)
    math.isfinite(loss.item())
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
    """A Lightning callback: seconds from the start of the training epoch to its end (the batches)."""

    def __init__(self) -> None:
        import pytorch_lightning as pl

        outer = self

        class Callback(pl.Callback):
            def on_train_epoch_start(self, trainer, module) -> None:
                outer.sync()
                outer.started = time.perf_counter()

            def on_train_epoch_end(self, trainer, module) -> None:
                outer.sync()
                outer.seconds.append(time.perf_counter() - outer.started)

        self.callback, self.seconds, self.started, self.sync = Callback(), [], 0.0, (lambda: None)


def trainer_kwargs(device: torch.device) -> dict[str, Any]:
    """conf/trainer/default.yaml, for one epoch, without a logger (as a job with logger=none)."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "trainer" / "default.yaml"))
    cfg.pop("_target_")
    cfg.update(max_epochs=1, accelerator="gpu" if device.type == "cuda" else "cpu", logger=False)
    return cfg


def lightning_epoch(base: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int, device: torch.device,
                    timer: EpochTimer) -> float:
    """One Lightning epoch of AdversarialModule (clean objective, SGD) over TensorBatches; returns fit seconds."""
    import pytorch_lightning as pl
    from pytorch_lightning.plugins.environments import LightningEnvironment

    from pipeline.data import TensorBatches
    from pipeline.module import AdversarialModule
    from pipeline.regularizers import Regularizer

    module = AdversarialModule(copy.deepcopy(base), Regularizer(), functools.partial(torch.optim.SGD, **SGD))
    trainer = pl.Trainer(**trainer_kwargs(device), callbacks=[timer.callback], plugins=[LightningEnvironment()])
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
    float(total / count)
    sync()
    return time.perf_counter() - started


def bench_lightning_epoch(sizes: Sizes, device: torch.device, judged: bool, examples: int | None = None,
                          models: Sequence[str] | None = None, batch_sizes: Sequence[int] | None = None,
                          repeats: int | None = None) -> list[dict[str, Any]]:
    import warnings

    from pipeline.job import quiet_lightning

    quiet_lightning()
    warnings.filterwarnings("ignore", message=".*validation_step.*")
    sync, rows = synchronizer(device), []
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
                lightning_epoch(base, x, y, batch, device, timer)            # warm-up both
                plain_epoch(base, x, y, batch, sync)
                timer.seconds.clear()
                t_plain, fits = [], []
                for _ in range(repeats or sizes.epoch_repeats):
                    t_plain.append(plain_epoch(base, x, y, batch, sync))
                    fits.append(lightning_epoch(base, x, y, batch, device, timer))
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


def bench_transfer(sizes: Sizes, device: torch.device) -> dict[str, Any]:
    """M models, K ε, a test set that fits one batch: transfer_rows should take one input gradient per source."""
    from pipeline.transfer import transfer_rows

    names = [f"{kind}{i}" for i, kind in zip(range(sizes.transfer_models), ["softmax", "maxout"] * 8)]
    targets = {n: make_model("softmax" if n.startswith("softmax") else "maxout", device, seed=i).eval()
               for i, n in enumerate(names)}
    epsilons = [round(0.3 * (k + 1) / sizes.transfer_epsilons, 4) for k in range(sizes.transfer_epsilons)]
    x, y = make_batch(sizes.transfer_examples, device)
    counters = {n: PassCounter(m) for n, m in targets.items()}
    reported, rows = 0, 0
    started = time.perf_counter()
    try:
        for source in names:
            source_rows, gradients = transfer_rows(source, targets, x, y, epsilons, (0.0, 1.0), "true", 1000)
            reported, rows = reported + gradients, rows + len(source_rows)
    finally:
        for c in counters.values():
            c.close()
    hooked = sum(c.backwards for c in counters.values())
    m, k = len(names), len(epsilons)
    return {"models": m, "epsilons": k, "examples": sizes.transfer_examples, "batch_size": 1000,
            "input_gradients_reported": reported, "input_gradients_hooked": hooked, "expected": m,
            "rows": rows, "expected_rows": m * m * k, "seconds": time.perf_counter() - started,
            "ok": reported == hooked == m and rows == m * m * k}


# -- sweeps on Ray (each driven from a subprocess, so this process never becomes a Ray driver) ----------------------

def plan_small_jobs(count: int, epochs: int, sweep_name: str, models: str = "softmax,maxout",
                    full_size: bool = False) -> list:
    """`count` jobs of experiment=smoke (600 digits, a 32 × 2 maxout), logger=none; full_size: all 3,500 training
    digits and the paper's 240 × 5 maxout."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from pipeline.cli import CONF_DIR
    from pipeline.plan import plan

    per_seed = len(models.split(",")) * 2
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("sweep", overrides=["experiment=smoke"])
        with open_dict(cfg):
            cfg.sweep.name = sweep_name
            cfg.sweep.grid = {"model": models, "regularizer": "none,adversarial",
                              "seed": f"range({math.ceil(count / per_seed)})"}
            cfg.sweep.overrides = [f"trainer.max_epochs={epochs}", "logger=none"] + ([] if full_size else
                                                                                     ["data.limit=600"])
            if full_size:
                cfg.sweep.when = {"model=rbf": ["optimizer=adam"]}
        return plan(cfg.sweep, group=sweep_name)[:count]


def sweep_driver(spec_path: str) -> None:
    """Run in a subprocess: join (or start) Ray, train the planned jobs with run_jobs, write what was measured."""
    from pipeline import store
    from pipeline.schedule import connect, job_dir, run_jobs

    spec = json.loads(Path(spec_path).read_text())
    connect(spec["address"], spec.get("num_cpus"), spec.get("num_gpus"))
    import ray

    jobs = plan_small_jobs(spec["jobs"], spec["epochs"], spec["name"], spec.get("models", "softmax,maxout"),
                           spec.get("full_size", False))
    resources = ray.cluster_resources()
    rounds = []
    for number in range(spec.get("rounds", 1)):   # round 0 starts the workers; later rounds reuse them (warm)
        sweep_dir = Path(spec["dir"]) / f"round{number}"
        began_at = time.time()
        started = time.perf_counter()
        outcome = run_jobs(jobs, sweep_dir, cpus=spec["cpus"], gpus=spec["gpus"], force=True, poll_seconds=0.5)
        wall = time.perf_counter() - started
        per_job = []
        for job in jobs:
            directory = job_dir(sweep_dir, job)
            metrics = store.read_metrics(directory)
            if metrics is None:
                continue
            began = (directory / store.CONFIG).stat().st_mtime
            ended = (directory / store.METRICS).stat().st_mtime
            per_job.append({"id": job.id, "label": job.label, "node": metrics.get("ray_node_id"),
                            "job_seconds": ended - began, "train_seconds": metrics["train_seconds"],
                            "started_after": began - began_at, "ended_after": ended - began_at})
        rounds.append({"wall_seconds": wall, "jobs": per_job, "trained": len(outcome.trained),
                       "failed": outcome.failed})
    Path(spec["out"]).write_text(json.dumps({"rounds": rounds, "cluster_resources": resources}))
    ray.shutdown()


def drive_sweep(spec: dict[str, Any], env: dict[str, str], timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        spec = {**spec, "dir": str(Path(tmp) / "sweep"), "out": str(Path(tmp) / "result.json")}
        (Path(tmp) / "spec.json").write_text(json.dumps(spec))
        code = "import sys; from pipeline.benchmark import sweep_driver; sweep_driver(sys.argv[1])"
        result = subprocess.run([sys.executable, "-c", code, str(Path(tmp) / "spec.json")], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0 or not Path(spec["out"]).exists():
            raise RuntimeError(f"sweep driver exited {result.returncode}: {tail(result.stderr)}")
        return json.loads(Path(spec["out"]).read_text())


def tail(text: str, lines: int = 6) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


def bench_sweep(sizes: Sizes, address: str | None, judged: bool) -> dict[str, Any]:
    """Packing efficiency of run_jobs on a two-node Ray cluster: (Σ job time / slots) / wall time."""
    from contextlib import nullcontext

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        if address is None:
            from tests.support.ray_cluster import RayCluster

            started = time.perf_counter()
            context = RayCluster(Path(tmp), num_cpus=1)
        else:
            context = nullcontext()
        with context as cluster:
            startup = time.perf_counter() - started if address is None else None
            target = address or cluster.address
            spec = {"address": target, "jobs": sizes.sweep_jobs, "epochs": sizes.sweep_epochs, "cpus": 1, "gpus": 0,
                    "name": "benchmark", "rounds": 2}
            result = drive_sweep(spec, env, timeout=900)
    slots = int(result["cluster_resources"].get("CPU", 0) // 1)
    rounds = [sweep_round(r, slots) for r in result["rounds"]]
    cold = rounds[0]
    ok = all(r["trained"] == sizes.sweep_jobs and not r["failed"] for r in rounds)
    return {"id": "sweep", "title": "sweep on a two-node local Ray cluster", "cluster_started_here": address is None,
            "cluster_startup_seconds": startup, "address": address, "slots": slots, "planned": sizes.sweep_jobs,
            "epochs": sizes.sweep_epochs, **cold, "warm": rounds[1] if len(rounds) > 1 else None,
            "job_time": "per job, in the task: config.yaml written (run_job starts) to metrics.json written "
                        "(data, model, Trainer.fit, FGSM curve, scores, checkpoint); excludes the worker's imports",
            "judged_round": "cold: the sweep's first run_jobs on fresh workers (what a sweep gets); warm: the same "
                            "jobs again on the workers round 0 started", "ok": ok,
            "target": {"op": ">=", "value": 0.85}, "judged": judged,
            "passed": judge(cold["efficiency"], ">=", 0.85) if judged else None}


def sweep_round(result: dict[str, Any], slots: int) -> dict[str, Any]:
    jobs = result["jobs"]
    job_seconds = sum(j["job_seconds"] for j in jobs)
    train_seconds = sum(j["train_seconds"] for j in jobs)
    wall = result["wall_seconds"]
    return {"jobs": len(jobs), "trained": result["trained"], "failed": result["failed"], "wall_seconds": wall,
            "sum_job_seconds": job_seconds, "sum_train_seconds": train_seconds,
            "efficiency": job_seconds / slots / wall if slots else float("nan"),
            "efficiency_train_only": train_seconds / slots / wall if slots else float("nan"),
            "first_job_started_after": min((j["started_after"] for j in jobs), default=None),
            "last_job_ended_after": max((j["ended_after"] for j in jobs), default=None),
            "jobs_per_node": {n: sum(j["node"] == n for j in jobs) for n in sorted({j["node"] for j in jobs})},
            "per_job": jobs}


def bench_main_job(timeout: float = 900) -> dict[str, Any]:
    """Wall time of the real main job, `python -m jobs.sweep dir=<tmp>` (local Ray, W&B offline)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["WANDB_MODE"] = "offline"
    with tempfile.TemporaryDirectory(prefix="bench-main-") as tmp:
        command = [sys.executable, "-m", "jobs.sweep", f"dir={Path(tmp) / 'main'}"]
        started = time.perf_counter()
        try:
            result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"id": "main_job", "command": "python -m jobs.sweep dir=<tmp>", "wall_seconds": None,
                    "returncode": None, "error": f"timed out after {timeout:.0f} s", "passed": False, "judged": True,
                    "target": {"op": "<=", "value": MAIN_JOB_LIMIT_S}}
        wall = time.perf_counter() - started
        trained = next((line for line in result.stderr.splitlines() if line.startswith("[sweep] trained")), None)
    entry = {"id": "main_job", "command": "python -m jobs.sweep dir=<tmp>", "wall_seconds": wall,
             "returncode": result.returncode, "trained": trained, "target": {"op": "<=", "value": MAIN_JOB_LIMIT_S},
             "judged": True, "passed": result.returncode == 0 and wall <= MAIN_JOB_LIMIT_S}
    if result.returncode != 0:
        entry["error"] = tail(result.stderr)
    return entry


# -- GPU extras -----------------------------------------------------------------------------------------------------

def bench_gpu(sizes: Sizes, device: torch.device) -> dict[str, Any]:
    """Maxout epoch over 60,000 × 784 on-device tensors; jobs per GPU with fractional packing (1, 4, 8 per GPU)."""
    if device.type != "cuda":
        return {"skipped": "needs a GPU: run with --device cuda on a machine with CUDA"}
    epoch = bench_lightning_epoch(sizes, device, judged=True, examples=sizes.gpu_epoch_examples, models=("maxout",),
                                  batch_sizes=(100,), repeats=3)[0]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    packing = []
    for per_gpu in sizes.gpu_pack:
        spec = {"address": None, "num_cpus": os.cpu_count(), "num_gpus": 1, "jobs": sizes.gpu_pack_jobs,
                "epochs": 5, "cpus": 1, "gpus": 1 / per_gpu, "name": f"pack{per_gpu}", "models": "maxout",
                "full_size": True}
        result = drive_sweep(spec, env, timeout=1200)["rounds"][0]   # a fresh local Ray each time: cold for all
        packing.append({"jobs_per_gpu": per_gpu, "jobs": len(result["jobs"]), "wall_seconds": result["wall_seconds"],
                        "jobs_per_minute": 60 * len(result["jobs"]) / result["wall_seconds"],
                        "failed": result["failed"]})
    single = packing[0]["wall_seconds"]
    for entry in packing:
        entry["speedup_vs_1"] = single / entry["wall_seconds"]
    return {"device": torch.cuda.get_device_name(device), "maxout_epoch_60000": epoch, "packing": packing}


# -- report ---------------------------------------------------------------------------------------------------------

def skipped(cid: str, reason: str) -> dict[str, Any]:
    return {"id": cid, "skipped": reason}


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def seconds(value: float) -> str:
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 1e-3:
        return f"{value * 1e3:.2f} ms"
    return f"{value * 1e6:.0f} µs"


def verdict(entry: dict[str, Any]) -> str:
    if not entry.get("judged", True):
        return "not judged (--quick)"
    return "pass" if entry.get("passed") else "**FAIL**"


def op_text(target: dict[str, Any], unit: str = "×") -> str:
    sign = "≥" if target["op"] == ">=" else "≤"
    return f"{sign} {target['value']:g}{unit}"


def markdown(report: dict[str, Any]) -> str:
    lines = ["| comparison | model | batch | measured | reference | ratio: median [IQR] (min–max) | target | result |",
             "|---|---|---|---|---|---|---|---|"]
    for entry in report["comparisons"]:
        if "skipped" in entry:
            lines.append(f"| {entry['id']} | | | | | skipped: {entry['skipped']} | | |")
            continue
        r = entry["ratio"]
        m, ref = entry["measured"], entry["reference"]
        lines.append(
            f"| {entry['title']} | {entry['model']} | {entry['batch_size']:,} | {m['label']}: {seconds(m['seconds']['median'])}"
            f" | {ref['label']}: {seconds(ref['seconds']['median'])} | {r['median']:.2f}× [{r['q1']:.2f}–{r['q3']:.2f}]"
            f" ({r['min']:.2f}–{r['max']:.2f}) | {op_text(entry['target'])} | {verdict(entry)} |")
    counts = report["counts"]
    adv = counts.get("adversarial_step")
    if adv:
        passes = "; ".join(f"{name}: {c['adversarial']['forwards']} forwards, {c['adversarial']['backwards']} backwards"
                           for name, c in adv["per_model"].items())
        lines.append(f"| adversarial step passes (hooks) | | | {passes} | | | 2 and 2 | "
                     f"{'pass' if adv['ok'] else '**FAIL**'} |")
    transfer = counts.get("transfer")
    if transfer:
        lines.append(f"| transfer stage, M = {transfer['models']} models, K = {transfer['epsilons']} ε | | "
                     f"{transfer['examples']:,} | input gradients: {transfer['input_gradients_reported']} reported, "
                     f"{transfer['input_gradients_hooked']} by hooks | | | = M = {transfer['expected']} | "
                     f"{'pass' if transfer['ok'] else '**FAIL**'} |")
    sweep = report["sweep"]
    if "skipped" in sweep:
        lines.append(f"| sweep on a two-node local Ray cluster | | | | | skipped: {sweep['skipped']} | ≥ 85% | |")
    elif "error" in sweep:
        lines.append(f"| sweep on a two-node local Ray cluster | | | | | error: {sweep['error']} | ≥ 85% | **FAIL** |")
    else:
        lines.append(f"| sweep on a two-node local Ray cluster | {sweep['jobs']} jobs, {sweep['slots']} slots | | "
                     f"Σ job time / slots: {sweep['sum_job_seconds'] / max(sweep['slots'], 1):.1f} s | "
                     f"wall: {sweep['wall_seconds']:.1f} s | {sweep['efficiency']:.0%} cold"
                     + (f", {sweep['warm']['efficiency']:.0%} on warm workers" if sweep.get("warm") else "")
                     + f" (train time only: {sweep['efficiency_train_only']:.0%}) | ≥ 85% | {verdict(sweep)} |")
    main = report["main_job"]
    if "skipped" in main:
        lines.append(f"| the main job | | | | | skipped: {main['skipped']} | ≤ 5 min | |")
    else:
        wall = f"{main['wall_seconds']:.0f} s" if main.get("wall_seconds") is not None else "—"
        extra = f" (exit {main['returncode']}: {main.get('error', '')})" if main.get("returncode") else ""
        lines.append(f"| the main job | | | `python -m jobs.sweep`: {wall}{extra} | | | ≤ 5 min | {verdict(main)} |")
    gpu = report["gpu"]
    if "skipped" in gpu:
        lines.append(f"| GPU extras | | | | | {gpu['skipped']} | | |")
    elif "error" in gpu:
        lines.append(f"| GPU extras | | | | | error: {gpu['error']} | | |")
    else:
        e = gpu["maxout_epoch_60000"]
        lines.append(f"| GPU: maxout epoch, 60,000 × 784 | maxout | 100 | Lightning: {seconds(e['measured']['seconds']['median'])}"
                     f" | plain loop: {seconds(e['reference']['seconds']['median'])} | {e['ratio']['median']:.2f}× | | |")
        for p in gpu["packing"]:
            lines.append(f"| GPU: {p['jobs_per_gpu']} jobs per GPU | | | {p['jobs']} jobs in {p['wall_seconds']:.1f} s "
                         f"({p['jobs_per_minute']:.1f}/min) | | {p['speedup_vs_1']:.2f}× vs 1 per GPU | | |")
    return "\n".join(lines)


# -- command line ---------------------------------------------------------------------------------------------------

class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:   # one line, exit 2 (the project's convention for bad input)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = Parser(prog="python -m jobs.benchmark", description="Benchmark the fast paths against their baselines.")
    parser.add_argument("--quick", action="store_true", help="CI sizes; checks the counts, judges no timing")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", default="benchmark.json", help="where the JSON results go")
    parser.add_argument("--ray", action="store_true", help="with --quick: also run the Ray sweep comparison")
    parser.add_argument("--ray-address", default=None, help="host:port of an existing Ray cluster to use for the sweep "
                                                            "comparison (default: start a two-node one on loopback)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads in this process (default: torch's own choice; 1 with --quick)")
    parser.add_argument("--only", default=None, help=f"comma-separated subset of: {','.join(STAGES)}")
    args = parser.parse_args(argv)
    if args.only is not None:
        only = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = [s for s in only if s not in STAGES]
        if unknown or not only:
            parser.error(f"--only={args.only}: unknown stage {', '.join(unknown) or '(none given)'}; "
                         f"choose from {','.join(STAGES)}")
        args.only = set(only)
    else:
        args.only = set(STAGES)
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads={args.threads} must be ≥ 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible (torch.cuda.is_available() is False); use --device cpu")
    out = Path(args.out)
    if out.is_dir():
        parser.error(f"--out={out} is a folder; give a file name such as {out / 'benchmark.json'}")
    try:
        from pipeline.store import ensure_writable

        ensure_writable(out.parent if str(out.parent) else Path("."), "--out folder")
        if args.ray_address is not None:
            from pipeline.schedule import check_reachable

            check_reachable(args.ray_address)
    except ConfigError as error:
        parser.error(str(error).replace("cluster.address=", "--ray-address="))
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = QUICK if args.quick else FULL
    threads = args.threads or (1 if args.quick else None)   # --quick times nothing it judges: one thread keeps
    if threads is not None:                                  # it fast on a loaded CI machine
        torch.set_num_threads(threads)
    device = torch.device(args.device)
    judged = not args.quick
    only = args.only
    log = functools.partial(print, file=sys.stderr, flush=True)
    report: dict[str, Any] = {
        "command": "python -m jobs.benchmark " + " ".join(sys.argv[1:]), "mode": "quick" if args.quick else "full",
        "device": str(device), "machine": machine(), "sizes": asdict(sizes), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "load_before": list(os.getloadavg()), "comparisons": [], "counts": {}, "errors": []}
    begun = time.perf_counter()

    def stage(name: str, fn: Callable[[], Any]) -> Any:
        if name not in only:
            return None
        log(f"[benchmark] {name} ...")
        started = time.perf_counter()
        try:
            return fn()
        except Exception as error:  # noqa: BLE001 - one broken stage is reported; the others still run
            report["errors"].append(f"{name}: {type(error).__name__}: {error}")
            log(f"[benchmark] {name} failed: {type(error).__name__}: {error}")
            return {"error": f"{type(error).__name__}: {str(error)[:500]}"}
        finally:
            log(f"[benchmark] {name} done in {time.perf_counter() - started:.1f} s")

    for name, fn in (("fgsm_curve", bench_fgsm_curve), ("fgsm", bench_fgsm)):
        rows = stage(name, lambda fn=fn: fn(sizes, device, judged))
        if isinstance(rows, list):
            report["comparisons"] += rows
    result = stage("adversarial_step", lambda: bench_adversarial_step(sizes, device, judged))
    if isinstance(result, tuple):
        report["comparisons"] += result[0]
        report["counts"]["adversarial_step"] = result[1]
    rows = stage("lightning_epoch", lambda: bench_lightning_epoch(sizes, device, judged))
    if isinstance(rows, list):
        report["comparisons"] += rows
    transfer = stage("transfer", lambda: bench_transfer(sizes, device))
    if isinstance(transfer, dict) and "error" not in transfer:
        report["counts"]["transfer"] = transfer

    if args.quick and not args.ray and args.ray_address is None:
        report["sweep"] = skipped("sweep", "--quick (pass --ray to run it)")
    else:
        report["sweep"] = stage("sweep", lambda: bench_sweep(sizes, args.ray_address, judged)) or skipped(
            "sweep", "not in --only")
    if args.quick:
        report["main_job"] = skipped("main_job", "--quick")
    else:
        report["main_job"] = stage("main_job", bench_main_job) or skipped("main_job", "not in --only")
    report["gpu"] = stage("gpu", lambda: bench_gpu(sizes, device)) or skipped("gpu", "not in --only")

    report["load_after"] = list(os.getloadavg())
    report["seconds"] = time.perf_counter() - begun
    checks = [c["ok"] for c in report["counts"].values()]
    if isinstance(report["sweep"], dict) and "ok" in report["sweep"]:
        checks.append(report["sweep"]["ok"])
    report["counts_ok"] = all(checks)
    report["table_markdown"] = markdown(report)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    report = run(args)
    out = Path(args.out)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str))
    tmp.replace(out)
    print(report["table_markdown"])
    load = ", ".join(f"{v:.2f}" for v in report["load_before"]), ", ".join(f"{v:.2f}" for v in report["load_after"])
    print(f"\nload average before: {load[0]}; after: {load[1]}; {report['seconds']:.0f} s in all; results in {out}")
    if report["errors"]:
        print("errors: " + "; ".join(report["errors"]), file=sys.stderr)
    return 0 if report["counts_ok"] and not report["errors"] else 1
