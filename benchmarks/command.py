"""The command line of the benchmark: parse the arguments, run the chosen stages, write the JSON, print the table."""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from benchmarks.evaluation import bench_evaluation
from benchmarks.fgsm import bench_fgsm, bench_fgsm_curve
from benchmarks.gpu import bench_gpu
from benchmarks.launcher import bench_launcher
from benchmarks.planning import bench_planning
from benchmarks.sizes import FULL, QUICK
from benchmarks.sweeps import bench_auth, bench_main_job, bench_overhead, bench_sweep
from benchmarks.table import machine, markdown, skipped
from benchmarks.training import bench_adversarial_step, bench_lightning_epoch
from benchmarks.transfer_count import bench_transfer
from benchmarks.transfer_scaling import bench_transfer_scaling
from pipeline import store
from pipeline.errors import ConfigError

STAGES = ("fgsm_curve", "fgsm", "adversarial_step", "lightning_epoch", "transfer", "evaluation", "planning",
          "transfer_scaling", "sweep", "overhead", "launcher", "main_job", "auth", "gpu")
RAY = ("sweep", "overhead", "launcher")   # --quick runs them only with --ray or --ray-address


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:   # one line, exit 2 (the project's convention for bad input)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = Parser(prog="python -m jobs.benchmark", description="Benchmark the fast paths against their baselines.")
    parser.add_argument("--quick", action="store_true", help="CI sizes; judges no timing")
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
            from pipeline.cluster import check_reachable

            check_reachable(args.ray_address)
    except ConfigError as error:
        parser.error(str(error).replace("cluster.address=", "--ray-address="))
    return args


def stages(args: argparse.Namespace) -> dict[str, Callable[[], Any]]:
    """Every stage, in STAGES order, ready to run at the chosen sizes."""
    sizes, device, judged = QUICK if args.quick else FULL, torch.device(args.device), not args.quick
    return {"fgsm_curve": lambda: bench_fgsm_curve(sizes, device, judged),
            "fgsm": lambda: bench_fgsm(sizes, device, judged),
            "adversarial_step": lambda: bench_adversarial_step(sizes, device, judged),
            "lightning_epoch": lambda: bench_lightning_epoch(sizes, device, judged),
            "transfer": lambda: bench_transfer(sizes, device),
            "evaluation": lambda: bench_evaluation(sizes.evaluation_examples, limits=sizes.autoattack_limits),
            "planning": lambda: bench_planning(sizes, judged),
            "transfer_scaling": lambda: bench_transfer_scaling(sizes, judged),
            "sweep": lambda: bench_sweep(sizes, args.ray_address, judged),
            "overhead": lambda: bench_overhead(sizes, judged),
            "launcher": lambda: bench_launcher(judged),
            "main_job": bench_main_job,
            "auth": bench_auth,
            "gpu": lambda: bench_gpu(sizes, device)}


def skip_reason(name: str, args: argparse.Namespace) -> str | None:
    if name not in args.only:
        return "not in --only"
    if name == "gpu" and args.device != "cuda":
        return "needs a GPU: run with --device cuda on a machine with CUDA"
    if args.quick and name in ("main_job", "auth"):
        return "--quick"
    if args.quick and name in RAY and not args.ray and args.ray_address is None:
        return "--quick (pass --ray to run it)"
    return None


def run(args: argparse.Namespace) -> dict[str, Any]:
    threads = args.threads or (1 if args.quick else None)   # --quick times nothing it judges: one thread keeps
    if threads is not None:                                  # it fast on a loaded CI machine
        torch.set_num_threads(threads)
    log = functools.partial(print, file=sys.stderr, flush=True)
    report: dict[str, Any] = {
        "command": "python -m jobs.benchmark " + " ".join(sys.argv[1:]), "mode": "quick" if args.quick else "full",
        "device": args.device, "machine": machine(), "sizes": asdict(QUICK if args.quick else FULL),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"), "load_before": list(os.getloadavg()), "errors": []}
    begun = time.perf_counter()
    for name, fn in stages(args).items():
        if (reason := skip_reason(name, args)) is not None:
            report[name] = skipped(name, reason)
            continue
        log(f"[benchmark] {name} ...")
        started = time.perf_counter()
        try:
            report[name] = fn()
        except Exception as error:  # noqa: BLE001 - one broken stage is reported; the others still run
            report["errors"].append(f"{name}: {type(error).__name__}: {error}")
            report[name] = {"id": name, "error": f"{type(error).__name__}: {str(error)[:500]}"}
        log(f"[benchmark] {name} done in {time.perf_counter() - started:.1f} s")
    report["load_after"] = list(os.getloadavg())
    report["seconds"] = time.perf_counter() - begun
    report["table_markdown"] = markdown(report)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    report = run(args)
    out = Path(args.out)
    store.atomic_write(out, lambda tmp: tmp.write_text(json.dumps(report, indent=2, default=str)))
    print(report["table_markdown"])
    load = ", ".join(f"{v:.2f}" for v in report["load_before"]), ", ".join(f"{v:.2f}" for v in report["load_after"])
    print(f"\nload average before: {load[0]}; after: {load[1]}; {report['seconds']:.0f} s in all; results in {out}")
    if report["errors"]:
        print("errors: " + "; ".join(report["errors"]), file=sys.stderr)
    return 1 if report["errors"] else 0
