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
from benchmarks.workload import plan_sweep, sweep_config

TARGET = 1.25   # time per seed at the largest S / time per seed at the smallest S
ADD = ("logger=none", "trainer.max_epochs=0", "data.limit=100", "eval.epsilons=[0.25]")


def sweep(seeds: int, pairs: str):
    cfg = sweep_config("sweep.name=transfer", "transfer.epsilons=[0.0,0.25]", f"transfer.pairs={pairs}",
                       grid={"model": "softmax,maxout", "seed": f"range({seeds})"}, add=ADD)
    return cfg, plan_sweep(cfg)


def bench_transfer_scaling(sizes: Sizes, judged: bool) -> dict[str, Any]:
    from omegaconf import OmegaConf

    from pipeline import store
    from pipeline.training.job import run_job
    from pipeline.stages.sweep_dir import TRANSFER_META, job_dir
    from pipeline.stages.transfer import transfer_stage

    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-transfer-") as tmp:
        sweep_dir = Path(tmp)
        for job in sweep(max(sizes.transfer_seeds), "seed_matched")[1]:
            run_job(OmegaConf.create(job.config), job_dir(sweep_dir, job))
        for pairs, seeds_list in (("seed_matched", sizes.transfer_seeds), ("all", sizes.transfer_seeds[:-1])):
            for seeds in seeds_list:
                cfg, chosen = sweep(seeds, pairs)
                started = time.perf_counter()
                table, _ = transfer_stage(cfg, sweep_dir, chosen, force=True)
                seconds = time.perf_counter() - started
                meta = store.read_json(sweep_dir / TRANSFER_META)
                runs.append({"pairs": pairs, "seeds": seeds, "jobs": len(chosen), "seconds": seconds,
                             "rows": len(table), "tasks": meta["tasks"], "models_loaded": meta["models_loaded"]})
    per_seed = [r["seconds"] / r["seeds"] for r in runs if r["pairs"] == "seed_matched"]
    growth = per_seed[-1] / per_seed[0]
    return {"id": "transfer_scaling", "title": "transfer stage, 2 models × S seeds", "runs": runs,
            "per_seed_growth": growth,
            "ratio_definition": "seconds per seed at the largest S / at the smallest S (1 = linear in seeds)",
            "target": {"op": "<=", "value": TARGET}, "judged": judged,
            "passed": judge(growth, "<=", TARGET) if judged else None}
