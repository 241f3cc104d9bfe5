"""The transfer matrix: FGSM examples crafted on source jobs, predicted by target jobs.

Which pairs (`transfer.pairs`): `seed_matched` (the default) attacks from each source job the targets of its own
seed, so the work grows linearly with seeds, one task per seed; `all` attacks every job of the same data, one task
per source, and grows with the square of the jobs. `transfer.sources` / `transfer.targets` keep only the named
settings. Only models trained on the same data are compared; each task loads each model it needs once.

For every source and ε the adversarial test set is crafted once, from one input gradient per batch shared by all
ε, and every target model predicts it. Per (source, target, ε) row: the target's error rate, mean confidence and
confidence on its mistakes; the paper's agreement on the wrong class, over examples both models misclassify
(`agreement_both_wrong`) and over the source's mistakes (`agreement_source_wrong`). transfer_settings.csv averages
the rows over seeds per (source setting, target setting, ε), pairing jobs of one seed.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
from omegaconf import DictConfig

from pipeline import store
from pipeline.attacks import as_clip, transfer_rows
from pipeline.devices import full_float32, task_device
from pipeline.provenance import TRANSFER_ENTRY, fingerprint
from pipeline.planned_job import Job
from pipeline.stages.sweep_dir import (TRANSFER, TRANSFER_META, TRANSFER_SETTINGS, checkpoints, complete_jobs,
                                       log_stage, part_key, stage_failures, table_from_parts)
from pipeline.stages.transfer_pairs import jobs_of_settings, listed, pairs
from pipeline.stats import estimate

COLUMNS = ["source", "target", "eps", "error", "confidence", "confidence_wrong", "source_error",
           "agreement_both_wrong", "agreement_source_wrong", "both_wrong"]
MEASURES = ["error", "agreement_both_wrong", "agreement_source_wrong", "confidence"]


@full_float32()   # float32 exactly, as on the CPU (no TF32)
def transfer_task(sources: list[str], targets: list[str], directories: dict[str, str], epsilons: Sequence[float],
                  clip: Sequence[float] | None, craft_with: str, batch_size: int) -> dict[str, Any]:
    """Every source against every target (one task): each model loaded once, the test set once (same data)."""
    from pipeline.data import test_set

    device = task_device()   # the GPU Ray assigned this task, else the CPU
    models = {job: store.load_model(directories[job], device) for job in dict.fromkeys(sources + targets)}
    first = Path(directories[sources[0]])
    x, y = (t.to(device) for t in test_set(store.read_config(first), first / store.CONFIG))
    rows, gradients = [], 0
    for source in sources:
        found, taken = transfer_rows(source, models[source], {t: models[t] for t in targets}, x, y, epsilons,
                                     as_clip(clip), craft_with, batch_size)
        rows, gradients = rows + found, gradients + taken
    return {"rows": rows, "gradients": gradients, "models_loaded": len(models)}


def tasks(jobs: list[Job], sweep_dir: Path, metrics: dict[str, dict[str, Any]], section: DictConfig
          ) -> dict[str, tuple]:
    """Part key -> arguments of `transfer_task`, for the complete jobs."""
    complete = [job for job in jobs if job.id in metrics]
    sources = jobs_of_settings(complete, listed(section.get("sources")), "transfer.sources")
    targets = jobs_of_settings(complete, listed(section.get("targets")), "transfer.targets")
    matched = pairs(section) == "seed_matched"
    groups: dict[tuple, list[Job]] = {}
    for job in complete:
        data = json.dumps(job.config["data"], sort_keys=True)
        seed = job.config.get("seed") if matched else None
        groups.setdefault((data, seed), []).append(job)
    settings = {"epsilons": list(section.epsilons), "clip": listed(section.clip), "craft_with": section.craft_with,
                "batch_size": int(section.batch_size)}
    calls = {}
    for group in groups.values():
        crafting = [job.id for job in group if sources is None or job.id in sources]
        predicting = [job.id for job in group if targets is None or job.id in targets]
        units = [crafting] if matched else [[s] for s in crafting]
        for unit in units if predicting else []:
            inputs = {"sources": checkpoints(sweep_dir, unit, metrics),
                      "targets": checkpoints(sweep_dir, predicting, metrics),
                      "code": fingerprint(TRANSFER_ENTRY), **settings}
            directories = {j: str(store.job_path(sweep_dir, j)) for j in dict.fromkeys(unit + predicting)}
            calls[part_key(inputs)] = (unit, predicting, directories, settings["epsilons"], settings["clip"],
                                       settings["craft_with"], settings["batch_size"])
    return calls


def by_setting(table: pd.DataFrame, jobs: list[Job]) -> pd.DataFrame:
    """Rows averaged over seeds per (source setting, target setting, ε), pairing jobs of one seed (a setting
    against itself is then the white-box attack): mean, half-width of the 95% interval and the number of seeds."""
    if table.empty:
        return pd.DataFrame(columns=["source", "target", "eps", "seeds"])
    setting = {job.id: job.setting for job in jobs}
    seed = {job.id: job.config.get("seed") for job in jobs}
    frame = table[[seed.get(s) == seed.get(t) for s, t in zip(table["source"], table["target"])]]
    frame = frame.assign(source=frame["source"].map(setting), target=frame["target"].map(setting))
    rows = []
    for (source, target, eps), group in frame.groupby(["source", "target", "eps"], sort=True):
        row = {"source": source, "target": target, "eps": eps, "seeds": len(group)}
        for measure in MEASURES:
            found = estimate(group[measure])
            row[measure] = found.mean if found else float("nan")
            row[f"{measure}_half"] = found.half if found else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def transfer_stage(cfg: DictConfig, sweep_dir: Path, jobs: list[Job], force: bool = False
                   ) -> tuple[pd.DataFrame, dict[str, str]]:
    """transfer.csv and transfer_settings.csv over the complete jobs, computing only the parts whose inputs
    changed; transfer.json says how many tasks ran, models each loaded and input gradients taken. Its W&B run holds
    the per-setting table (and the full one when it is small). Returns the table and the failed tasks' reasons."""
    metrics = complete_jobs(sweep_dir, jobs)
    section = cfg.transfer
    calls = tasks(jobs, sweep_dir, metrics, section)
    table, outcome = table_from_parts(sweep_dir, "transfer", transfer_task, calls, COLUMNS, gpus=section.get("gpu", 0),
                                      retries=cfg.retries, force=force)
    stage_failures("transfer", outcome)
    settings = by_setting(table, jobs)
    store.atomic_write(sweep_dir / TRANSFER, lambda tmp: table.to_csv(tmp, index=False))
    store.atomic_write(sweep_dir / TRANSFER_SETTINGS, lambda tmp: settings.to_csv(tmp, index=False))
    computed = list(outcome.results.values())
    store.write_json(sweep_dir / TRANSFER_META, {
        "pairs": pairs(section), "tasks": len(calls), "computed": len(computed),
        "reused": len(calls) - len(computed) - len(outcome.failed), "failed": outcome.failed, "rows": len(table),
        "models_loaded": [r["models_loaded"] for r in computed],
        "input_gradients": sum(r["gradients"] for r in computed)})
    log_stage(sweep_dir, jobs, "transfer", {"transfer_settings": settings,
                                            **({"transfer": table} if len(table) <= 10_000 else {})})
    return table, outcome.failed
