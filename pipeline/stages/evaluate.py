"""The evaluation stage: every complete job evaluated (pipeline/evaluation/: the attacks an honest evaluation adds,
the exact worst case, the diagnostics), one task and one part per job, into evaluations.csv (its rows:
pipeline/evaluation/rows.py) and diagnostics.csv (job_id, check, value, threshold, flag: one row per job and check
of pipeline/evaluation/diagnostics.py, `evaluation.diagnostics`), with the transfer check that needs the other
jobs. One task per job (pipeline.cluster.tasks; on a GPU when the task has one)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from pipeline import store
from pipeline.clipping import clip_name
from pipeline.evaluation.diagnostics import COLUMNS as DIAGNOSTICS_COLUMNS, transfer_checks
from pipeline.evaluation.job import evaluate_job
from pipeline.evaluation.rows import COLUMNS
from pipeline.planned_job import Job
from pipeline.provenance import EVALUATION_ENTRY, fingerprint
from pipeline.stages.sweep_dir import (DIAGNOSTICS, EVALUATIONS, TRANSFER, checkpoints, complete_jobs, job_dir, say,
                                       log_stage, part_key, read_table, stage_failures, table_from_parts)


def attack_seconds(evaluations: pd.DataFrame) -> dict[str, float]:
    """Seconds per attack in evaluation order, AutoAttack by component (its own row would count them twice). A
    row's `seconds` covers every ε of its clipping, so each (job, attack, clipping) counts once."""
    timed = evaluations[evaluations["seconds"].notna() & (evaluations["evaluation"] != "autoattack")]
    once = timed.drop_duplicates(["job_id", "evaluation", "clip"])
    return once.groupby("evaluation", sort=False)["seconds"].sum().to_dict()

def attack_cost(evaluations: pd.DataFrame) -> str:
    """'fgsm 9 s, pgd 72 s, …': `attack_seconds` as one line."""
    return ", ".join(f"{name} {seconds:.0f} s" for name, seconds in attack_seconds(evaluations).items())

def evaluation_stage(cfg: DictConfig, sweep_dir: Path, jobs: list[Job], force: bool = False
                     ) -> tuple[pd.DataFrame, dict[str, str]]:
    """evaluations.csv and diagnostics.csv over the complete jobs, one part per job, recomputed only where the
    job's checkpoint, the settings or this stage's code changed. Its W&B run holds both tables. Returns the
    evaluations and the failed tasks' reasons."""
    metrics = complete_jobs(sweep_dir, jobs)
    settings = OmegaConf.to_container(cfg.evaluation, resolve=True)
    gpus = settings.pop("gpu", 0)
    settings.pop("enabled", None)
    calls = {}
    for job in jobs:
        if job.id in metrics:
            inputs = {"job": checkpoints(sweep_dir, [job.id], metrics), "code": fingerprint(EVALUATION_ENTRY),
                      **settings}
            calls[part_key(inputs)] = (job.id, str(job_dir(sweep_dir, job)), settings)
    parts, outcome = table_from_parts(sweep_dir, "evaluation", evaluate_job, calls, COLUMNS + DIAGNOSTICS_COLUMNS[1:],
                                      gpus=gpus, retries=cfg.retries, force=force)
    stage_failures("evaluation", outcome)
    is_check = parts["check"].notna()
    table, checks = parts.loc[~is_check, COLUMNS], parts.loc[is_check, DIAGNOSTICS_COLUMNS]
    transfer = read_table(sweep_dir / TRANSFER)
    if settings.get("diagnostics") and cfg.transfer.enabled and len(transfer):
        extra = transfer_checks(table, transfer, clip_name(cfg.transfer.clip), settings["diagnostics"]["transfer"])
        checks = pd.concat([checks, pd.DataFrame(extra, columns=DIAGNOSTICS_COLUMNS)], ignore_index=True)
    checks = checks.astype({"flag": bool}).sort_values(["job_id", "check"], kind="stable")
    store.atomic_write(sweep_dir / EVALUATIONS, lambda tmp: table.to_csv(tmp, index=False))
    store.atomic_write(sweep_dir / DIAGNOSTICS, lambda tmp: checks.to_csv(tmp, index=False))
    log_stage(sweep_dir, jobs, "evaluation", {"evaluations": table, "diagnostics": checks})
    if len(table):   # the clocks of the tasks that ran now or before, kept out of the report (it stays reproducible)
        say(f"evaluation seconds by attack, over every job, clipping and ε: {attack_cost(table)}")
    return table, outcome.failed
