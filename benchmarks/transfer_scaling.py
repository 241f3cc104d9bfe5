"""The transfer stage as seeds grow: 2 models (softmax, maxout) × S seeds, seed-matched pairs (the default) against
all pairs. Jobs are real job directories made by `run_job` with zero training epochs (initialised models, the
embedded digits); the stage runs in this process (no Ray) and recomputes every part, so the time is the work.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.sizes import Sizes
from benchmarks.timing import judge

TARGET = 1.25   # time per seed at the largest S / time per seed at the smallest S
EPSILONS = "[0.0,0.25]"


def sweep(seeds: int, pairs: str):
    from hydra import compose
    from omegaconf import open_dict

    from pipeline.config import hydra_context
    from pipeline.stages.plan import plan

    with hydra_context():
        cfg = compose("sweep", overrides=["sweep.name=transfer", f"transfer.epsilons={EPSILONS}",
                                          f"transfer.pairs={pairs}"])
        with open_dict(cfg):
            cfg.sweep.grid = {"model": "softmax,maxout", "seed": f"range({seeds})"}
            cfg.sweep.overrides = ["logger=none", "trainer.max_epochs=0", "data.limit=100", "eval.epsilons=[0.25]"]
        return cfg, plan(cfg.sweep)


def bench_transfer_scaling(sizes: Sizes, judged: bool) -> dict[str, Any]:
    from omegaconf import OmegaConf

    from pipeline import store
    from pipeline.job import run_job
    from pipeline.stages.sweep_dir import TRANSFER_META, job_dir
    from pipeline.stages.transfer import transfer_stage

    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-transfer-") as tmp:
        sweep_dir = Path(tmp)
        _, jobs = sweep(max(sizes.transfer_seeds), "seed_matched")
        for job in jobs:
            run_job(OmegaConf.create(job.config), job_dir(sweep_dir, job))
        for pairs, seeds_list in (("seed_matched", sizes.transfer_seeds), ("all", sizes.transfer_seeds[:-1])):
            for seeds in seeds_list:
                cfg, chosen = sweep(seeds, pairs)
                started = time.perf_counter()
                table, _ = transfer_stage(cfg, sweep_dir, chosen, force=True)
                seconds = time.perf_counter() - started
                meta = store.read_json(sweep_dir / TRANSFER_META)
                expected = 2 * 2 * 2 * seeds if pairs == "seed_matched" else (2 * seeds) ** 2 * 2
                runs.append({"pairs": pairs, "seeds": seeds, "jobs": len(chosen), "seconds": seconds,
                             "rows": len(table), "expected_rows": expected, "tasks": meta["tasks"],
                             "models_loaded": meta["models_loaded"]})
    matched = [r for r in runs if r["pairs"] == "seed_matched"]
    per_seed = [r["seconds"] / r["seeds"] for r in matched]
    growth = per_seed[-1] / per_seed[0]
    ok = all(r["rows"] == r["expected_rows"] for r in runs) and all(
        r["models_loaded"] == [2] * r["seeds"] for r in matched)
    return {"id": "transfer_scaling", "title": "transfer stage, 2 models × S seeds", "runs": runs,
            "per_seed_growth": growth, "ok": ok,
            "ratio_definition": "seconds per seed at the largest S / at the smallest S (1 = linear in seeds)",
            "target": {"op": "<=", "value": TARGET}, "judged": judged,
            "passed": judge(growth, "<=", TARGET) if judged else None}
