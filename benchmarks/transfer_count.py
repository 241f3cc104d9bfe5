"""The transfer count: input gradients that transfer_rows takes for M models and K ε, as it reports them and as
hooks on the models see them (one per source is what tests/test_benchmark_checks.py holds it to)."""
from __future__ import annotations

import time
from typing import Any

import torch

from benchmarks.passes import PassCounter
from benchmarks.sizes import Sizes
from benchmarks.workload import make_batch, make_model


def bench_transfer(sizes: Sizes, device: torch.device) -> dict[str, Any]:
    """M models, K ε, a test set that fits one batch."""
    from pipeline.attacks import transfer_rows

    names = [f"{kind}{i}" for i, kind in zip(range(sizes.transfer_models), ["softmax", "maxout"] * 8)]
    targets = {n: make_model("softmax" if n.startswith("softmax") else "maxout", device, seed=i).eval()
               for i, n in enumerate(names)}
    epsilons = [round(0.3 * (k + 1) / sizes.transfer_epsilons, 4) for k in range(sizes.transfer_epsilons)]
    x, y = make_batch(sizes.transfer_examples, device)
    counters = [PassCounter(m) for m in targets.values()]
    reported, rows = 0, 0
    started = time.perf_counter()
    try:
        for source in names:
            source_rows, gradients = transfer_rows(source, targets[source], targets, x, y, epsilons, (0.0, 1.0),
                                                   "true", 1000)
            reported, rows = reported + gradients, rows + len(source_rows)
    finally:
        for counter in counters:
            counter.close()
    return {"models": len(names), "epsilons": len(epsilons), "examples": sizes.transfer_examples, "batch_size": 1000,
            "input_gradients_reported": reported, "input_gradients_hooked": sum(c.backwards for c in counters),
            "rows": rows, "seconds": time.perf_counter() - started}
