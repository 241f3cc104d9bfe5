"""Timing: interleaved A/B samples, their statistics, the comparison entry that judges them against a target, and
commands timed as a user runs them."""
from __future__ import annotations

import gc
import math
import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from benchmarks.sizes import ROOT


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


def sampled(fn: Callable[[], Any], repeats: int, min_seconds: float, sync: Callable[[], None]) -> list[float]:
    """Per-call seconds of `repeats` samples of one operation."""
    calls = calls_for(fn, min_seconds, sync)
    return [timed(fn, calls, sync) for _ in range(repeats)]


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


def subprocess_env(**extra: str) -> dict[str, str]:
    """This process's environment for a child that must start or join its own Ray (never ours), plus `extra`."""
    return {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, **extra}


def tail(text: str, lines: int = 6) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


def timed_command(command: Sequence[str], env: dict[str, str], timeout: float, cwd: Path = ROOT
                  ) -> tuple[dict[str, Any], str]:
    """A command's wall time and exit code (with its last lines when it failed), and its stderr."""
    started = time.perf_counter()
    try:
        result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"wall_seconds": None, "returncode": None, "error": f"timed out after {timeout:.0f} s"}, ""
    entry = {"wall_seconds": time.perf_counter() - started, "returncode": result.returncode}
    return (entry | {"error": tail(result.stderr)} if result.returncode else entry), result.stderr
