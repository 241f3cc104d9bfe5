"""The GPU check (`benchmarks/gpu_check.sh`): a few minutes on one GPU, every piece of a job on it, without Ray, W&B
or downloads, on random data whose labels a model can learn.

    benchmarks/gpu_check.sh --device cuda --out gpu_check          # about 5 minutes on one H100/H200
    benchmarks/gpu_check.sh --device cpu --quick --out /tmp/check  # the same, end to end, tiny (CI)

1. jobs: one short `run_job` per model (softmax, maxout, rbf, mlp, conv on CIFAR-size images, ensemble), with the
   device each ran on; then every evaluation attack of conf/sweep.yaml on the maxout and conv jobs (maxout only
   with --quick).
2. micro: FGSM curve (10 ε, one batch), one adversarial training step, a Lightning epoch over on-device examples,
   and the maxout epoch over 60,000 × 784.
3. packing: 1, 4, 8 and 16 one-epoch maxout jobs as processes started together on the one device (no Ray): the
   time of each, throughput, memory per process.
Writes <out>/gpu_check.json and <out>/gpu_check.md (a short table, also printed); a step that fails stops it
(exit 1). What a GPU must get right (a job on the GPU names it, FGSM agrees with the CPU) is tests/test_gpu.py's.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
MODELS = {   # name -> overrides of its job
    "softmax": ["model=softmax"],
    "maxout": ["model=maxout"],
    "rbf": ["model=rbf", "optimizer=adam"],
    "mlp": ["model=mlp"],
    "conv": ["model=conv"],   # on CIFAR-size images
    "ensemble": ["model=ensemble", "model.size=3"],
}
SHAPES = {"digits": (1, 28, 28), "images": (3, 32, 32)}


@dataclasses.dataclass(frozen=True)
class Scale:
    train: int            # training examples per job (the packing and epoch rows: 60,000)
    test: int             # test examples (evaluation)
    packing: tuple[int, ...]
    micro: str            # "FULL" or "QUICK" sizes of benchmarks/sizes.py
    rubbish: int
    evaluated: tuple[str, ...]   # the jobs every evaluation attack runs on
    micro_models: tuple[str, ...]


FULL_SCALE = Scale(train=60_000, test=2_000, packing=(1, 4, 8, 16), micro="FULL", rubbish=10_000,
                   evaluated=("maxout", "conv"), micro_models=("softmax", "maxout"))
QUICK_SCALE = Scale(train=300, test=200, packing=(1, 2), micro="QUICK", rubbish=200, evaluated=("maxout",),
                    micro_models=("maxout",))


# --- data: random pixels, labels from a fixed random linear map (learnable), as data=arrays files -----------------

def random_split(shape: tuple[int, ...], count: int, seed: int) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand((count, *shape), generator=generator)
    mapping = torch.randn(x[0].numel(), 10, generator=torch.Generator().manual_seed(1234))
    return {"x": x.numpy(), "y": (x.flatten(1) - 0.5).matmul(mapping).argmax(dim=1).numpy()}


def write_data(out: Path, scale: Scale) -> None:
    """<out>/digits.npz (1 × 28 × 28) and <out>/images.npz (3 × 32 × 32), for data=arrays."""
    import numpy as np

    out.mkdir(parents=True, exist_ok=True)
    for name, shape in SHAPES.items():
        # 1/0.9 more: the validation split comes out of the training set
        train, test = random_split(shape, int(scale.train / 0.9) + 10, seed=0), random_split(shape, scale.test, seed=1)
        np.savez(out / f"{name}.npz", x_train=train["x"], y_train=train["y"], x_test=test["x"], y_test=test["y"])


def job_config(model: str, device: str, out: Path, epsilons: list[float] | None = None):
    from benchmarks.workload import job_config as composed

    data = "images" if model == "conv" else "digits"
    return composed("logger=none", "data=arrays", f"data.path='{out / data}.npz'", f"data.name=random_{data}",
                    "trainer.max_epochs=1", f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}",
                    f"eval.epsilons={epsilons or [0.0, 0.1, 0.25]}", *MODELS[model])


# --- 1. one job per model, then the evaluation attacks ------------------------------------------------------------

def check_jobs(device: str, out: Path, scale: Scale) -> list[dict[str, Any]]:
    from pipeline.training.job import run_job

    rows = []
    for model in MODELS:
        began = time.perf_counter()
        metrics = run_job(job_config(model, device, out), out / "jobs" / model)
        rows.append({"model": model, "device": metrics["device"], "device_name": metrics.get("device_name"),
                     "seconds": time.perf_counter() - began,
                     "train_seconds": metrics["train_seconds"], "clean_error": metrics["clean_error"],
                     "fgsm_error_0.25": metrics["curve"][-1]["error"], "tf32": metrics["tf32"]})
    return rows


def check_evaluations(device: str, out: Path, scale: Scale) -> list[dict[str, Any]]:
    from omegaconf import OmegaConf

    from benchmarks.workload import sweep_config
    from pipeline.devices import task_device
    from pipeline.evaluation.job import evaluate_job

    settings = OmegaConf.to_container(sweep_config().evaluation, resolve=True)
    settings = {k: v for k, v in settings.items() if k not in ("gpu", "enabled")} | {"rubbish": scale.rubbish}
    rows = []
    for model in scale.evaluated:
        began = time.perf_counter()
        found = evaluate_job(model, str(out / "jobs" / model), settings)["rows"]
        rows.append({"model": model, "device": str(task_device()), "seconds": time.perf_counter() - began,
                     "attacks": sorted({r["evaluation"] for r in found if "evaluation" in r}),   # not the diagnostics
                     "rows": len(found)})
    return rows


# --- 2. the benchmark's micro rows ---------------------------------------------------------------------------------

def check_micro(device: str, scale: Scale) -> dict[str, Any]:
    from benchmarks import sizes
    from benchmarks.timing import sampled, synchronizer
    from benchmarks.training import bench_adversarial_step, bench_lightning_epoch
    from benchmarks.workload import make_batch, make_model
    from pipeline.attacks import fgsm_curve

    base = getattr(sizes, scale.micro)
    size = dataclasses.replace(base, repeats=min(base.repeats, 3), epoch_repeats=min(base.epoch_repeats, 3),
                               batch_sizes=base.batch_sizes[-1:], models=scale.micro_models)
    where, sync = torch.device(device), synchronizer(torch.device(device))
    curves = []
    for name in size.models:
        model, (x, y) = make_model(name, where).eval(), make_batch(size.batch_sizes[0], where)
        times = sampled(lambda: fgsm_curve(model, x, y, sizes.EPSILONS), 3, size.min_seconds, sync)
        curves.append({"model": name, "batch": len(y), "seconds": statistics.median(times)})
    epochs = bench_lightning_epoch(dataclasses.replace(size, epoch_examples=scale.train, batch_sizes=(100,)), where,
                                   judged=False)
    maxout = next(row for row in epochs if row["model"] == "maxout")
    return {"fgsm_curve": curves, "adversarial_step": bench_adversarial_step(size, where, judged=False),
            "lightning_epoch": epochs,
            "maxout_epoch": {"examples": scale.train, "seconds": maxout["measured"]["seconds"]["median"]}}


# --- 3. packing: one-epoch maxout processes started together --------------------------------------------------------

def pack_worker(device: str, job_dir: Path, out: Path) -> None:
    """One packed job (a subprocess): imports and config first, then wait for `go` beside it, then the job."""
    from pipeline.training.job import run_job

    go = job_dir.parent / "go"
    cfg = job_config("maxout", device, out, epsilons=[0.25])
    (job_dir.parent / f"{job_dir.name}.ready").touch()
    while not go.exists():
        time.sleep(0.05)
    metrics = run_job(cfg, job_dir)
    memory = torch.cuda.max_memory_reserved() if device == "cuda" else None
    print(json.dumps({"train_seconds": metrics["train_seconds"], "device": metrics["device"],
                      "max_memory_reserved": memory, "ended": time.time()}))


def gpu_memory_by_process() -> dict[int, int]:
    """MiB per process on the GPU, as nvidia-smi sees them (the CUDA context included); {} without nvidia-smi."""
    try:
        text = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    rows = [line.split(",") for line in text.splitlines() if line.strip()]
    return {int(pid): int(mib) for pid, mib in rows if pid.strip().isdigit() and mib.strip().isdigit()}


def check_packing(device: str, out: Path, scale: Scale) -> list[dict[str, Any]]:
    rows = []
    for count in scale.packing:
        folder = out / f"pack{count}"
        folder.mkdir(parents=True, exist_ok=True)
        go = folder / "go"
        workers = [subprocess.Popen([sys.executable, "-m", "benchmarks.gpu_check", "--worker", str(folder / str(i)),
                                     "--device", device, "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE,
                                    text=True) for i in range(count)]
        while len(list(folder.glob("*.ready"))) < count:
            if any(w.poll() not in (None, 0) for w in workers):
                break
            time.sleep(0.1)
        peak: dict[int, int] = {}
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                for pid, mib in gpu_memory_by_process().items():
                    peak[pid] = max(peak.get(pid, 0), mib)
                done.wait(0.5)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        began = time.time()
        go.touch()
        outputs = [worker.communicate(timeout=600)[0] for worker in workers]
        done.set()
        watcher.join()
        if failed := sum(worker.returncode != 0 for worker in workers):
            raise RuntimeError(f"packing {count}: {failed} of {count} jobs failed")
        results = [json.loads(output.splitlines()[-1]) for output in outputs]
        wall = max(r["ended"] for r in results) - began
        epochs = [r["train_seconds"] for r in results]
        rows.append({"processes": count, "wall_seconds": wall, "epoch_seconds_median": statistics.median(epochs),
                     "examples_per_second_per_job": scale.train / statistics.median(epochs),
                     "examples_per_second_total": count * scale.train / wall,   # whole jobs
                     # the epochs ran together (the jobs started at one signal): their summed training throughput
                     "epoch_examples_per_second_total": sum(scale.train / e for e in epochs),
                     "devices": sorted({r["device"] for r in results}),
                     "max_memory_reserved_mib": max(r["max_memory_reserved"] or 0 for r in results) / 2**20,
                     "nvidia_smi_mib_per_process": sorted(peak.values())})
    for row in rows:
        row["throughput_vs_1"] = row["epoch_examples_per_second_total"] / rows[0]["epoch_examples_per_second_total"]
    return rows


# --- the report ----------------------------------------------------------------------------------------------------

def table(report: dict[str, Any]) -> str:
    device = report["device"]
    lines = [f"GPU check on {report['device_name']} ({device}), {report['seconds']:.0f} s", "",
             "| check | result |", "|---|---|"]
    for job in report.get("jobs", []):
        lines.append(f"| job {job['model']} | {job['device']}, {job['seconds']:.1f} s (train "
                     f"{job['train_seconds']:.1f} s), clean error {job['clean_error']:.3f}, "
                     f"FGSM 0.25 {job['fgsm_error_0.25']:.3f} |")
    for row in report.get("evaluations", []):
        lines.append(f"| evaluation {row['model']} | {row['device']}, {row['seconds']:.1f} s: "
                     f"{', '.join(row['attacks'])} |")
    if micro := report.get("micro"):
        for row in micro["fgsm_curve"]:
            lines.append(f"| FGSM curve, 10 ε, {row['model']} × {row['batch']} | {1000 * row['seconds']:.2f} ms |")
        epoch = micro["maxout_epoch"]
        lines.append(f"| maxout epoch, {epoch['examples']:,} × 784 | {epoch['seconds']:.2f} s |")
    for row in report.get("packing", []):
        lines.append(f"| packing {row['processes']} processes | {row['wall_seconds']:.1f} s, training "
                     f"{row['epoch_examples_per_second_total']:,.0f} examples/s ({row['throughput_vs_1']:.2f}× one "
                     f"job), epoch {row['epoch_seconds_median']:.2f} s, memory {row['max_memory_reserved_mib']:.0f} "
                     f"MiB reserved {row['nvidia_smi_mib_per_process'] or ''} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/gpu_check.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI, a CPU)")
    parser.add_argument("--out", default="gpu_check", help="folder for the jobs, gpu_check.json and gpu_check.md")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)   # one packed job: its directory
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda: CUDA sees no GPU here; use --device cpu", file=sys.stderr)
        return 2
    scale = QUICK_SCALE if args.quick else FULL_SCALE
    os.environ.setdefault("WANDB_MODE", "disabled")
    out = Path(args.out).absolute()
    if args.worker:
        pack_worker(args.device, Path(args.worker), out)
        return 0
    write_data(out, scale)
    from pipeline.training.job import quiet_lightning

    quiet_lightning()
    began = time.perf_counter()
    report: dict[str, Any] = {"device": args.device, "quick": args.quick, "scale": dataclasses.asdict(scale),
                              "device_name": torch.cuda.get_device_name() if args.device == "cuda" else "CPU",
                              "torch": torch.__version__}
    for name, step in (("jobs", lambda: check_jobs(args.device, out, scale)),
                       ("evaluations", lambda: check_evaluations(args.device, out, scale)),
                       ("micro", lambda: check_micro(args.device, scale)),
                       ("packing", lambda: check_packing(args.device, out, scale))):
        started = time.perf_counter()
        report[name] = step()
        print(f"[gpu_check] {name}: {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    report["seconds"] = time.perf_counter() - began
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))
    text = table(report)
    (out / "gpu_check.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
