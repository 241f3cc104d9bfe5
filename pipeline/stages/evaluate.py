"""Extra evaluations of every complete job, beyond its own FGSM curve: the attacks an honest evaluation adds,
rubbish inputs and, for ensembles, FGSM crafted on one member.

Rows of evaluations.csv: job_id, evaluation, clip, eps, error, confidence, confidence_wrong, clean_error, where
`evaluation` is
    <attack name>   each attack of the sweep's `evaluation.attacks` (FGSM with true or predicted labels,
                    random-start FGSM, PGD, APGD-CE) at each of `evaluation.epsilons`, for each of
                    `evaluation.clips` ("none": the paper's unclipped attack; "0-1": clipped to the pixel range)
    strongest       per clipping and ε: an example counts as fooled when any of those attacks fooled it (the
                    per-example union, AutoAttack's worst case; at least the largest of their error rates);
                    no confidence
    rubbish         `evaluation.rubbish` inputs drawn from N(0, I) (the paper's Appendix A): error is the share
                    the model gives more than 0.5 probability on some class, confidence their mean confidence
    one_member      ensembles only: FGSM crafted on the first member and scored on the ensemble, with the job's
                    own attack clipping (compare it with the job's own FGSM error)
Every error is scored against the true labels. One task per job (pipeline.cluster.tasks; on a GPU when the
task has one).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from pipeline import store
from pipeline.attacks import Clip, as_clip, predict
from pipeline.config import instantiate
from pipeline.data import test_set
from pipeline.devices import attack_mode, task_device
from pipeline.paper.results import clip_name
from pipeline.provenance import EVALUATION_SOURCES, fingerprint
from pipeline.planned_job import Job
from pipeline.stages.sweep_dir import (EVALUATIONS, checkpoints, complete_jobs, job_dir, log_stage, part_key,
                                       stage_failures, table_from_parts)

COLUMNS = ["job_id", "evaluation", "clip", "eps", "error", "confidence", "confidence_wrong", "clean_error"]


def attack_rows(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: Mapping[str, Any],
                clips: Sequence[Sequence[float] | None], epsilons: Sequence[float], batch_size: int) -> list[dict]:
    """Each attack (a conf/attack-style config) at every ε, once per clipping; then `strongest` per clipping."""
    rows, fooled = [], {}       # fooled: clip name -> [K, N], fooled by some attack
    for name, attack_config in attacks.items():
        for clip in clips:
            attack = instantiate(OmegaConf.create(dict(attack_config)), f"evaluation.attacks.{name}",
                                 clip=list(clip) if clip is not None else None)
            curve = attack.curve(model, x, y, list(epsilons), batch_size=batch_size)
            rows += [{"evaluation": name, "clip": clip_name(clip), **row} for row in curve.rows()]
            fooled[clip_name(clip)] = fooled.get(clip_name(clip), curve.wrong) | curve.wrong
    return rows + [{"evaluation": "strongest", "clip": clip, "eps": eps, "error": float(wrong.float().mean()),
                    "confidence": float("nan"), "confidence_wrong": float("nan")}
                   for clip, per_eps in fooled.items() for eps, wrong in zip(epsilons, per_eps)]


def rubbish_row(model: torch.nn.Module, input_shape: Sequence[int], count: int, batch_size: int,
                seed: int = 0) -> dict:
    """The paper's rubbish class: how often N(0, I) inputs get more than 0.5 probability on some class."""
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    confidences = []
    for start in range(0, count, batch_size):
        noise = torch.randn((min(batch_size, count - start), *input_shape), generator=generator)
        confidences.append(predict(model, noise.to(device))[0])
    confidence = torch.cat(confidences)
    return {"evaluation": "rubbish", "clip": "none", "eps": float("nan"), "error": float((confidence > 0.5).float().mean()),
            "confidence": float(confidence.mean()), "confidence_wrong": float(confidence.mean())}


def one_member_rows(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epsilons: Sequence[float],
                    clip: Clip, batch_size: int) -> list[dict]:
    """FGSM crafted on an ensemble's first member and scored on the whole ensemble (the paper: 87.9%)."""
    from pipeline.stages.transfer import transfer_rows

    rows, _ = transfer_rows("member", model.members[0], {"ensemble": model}, x, y, epsilons, clip,
                            batch_size=batch_size)
    return [{"evaluation": "one_member", "clip": clip_name(clip), "eps": r["eps"], "error": r["error"],
             "confidence": r["confidence"], "confidence_wrong": r["confidence_wrong"]} for r in rows]


@attack_mode()   # float32 exactly, as on the CPU (no TF32)
def evaluate_job(job_id: str, job_dir: str, settings: Mapping[str, Any]) -> dict[str, list[dict]]:
    """Every evaluation of one job (the body of one task): {"rows": [...]}."""
    from pipeline.job import clean_scores

    config = store.read_config(Path(job_dir))
    device = task_device()   # the GPU Ray assigned this task, else the CPU
    model = store.load_model(job_dir, device)
    x, y = (t.to(device) for t in test_set(config))
    batch_size = int(settings["batch_size"])
    epsilons = [float(e) for e in settings["epsilons"]]
    rows = attack_rows(model, x, y, settings["attacks"], settings["clips"], epsilons, batch_size)
    if settings.get("rubbish"):
        rows.append(rubbish_row(model, x.shape[1:], int(settings["rubbish"]), batch_size))
    if hasattr(model, "members"):
        rows += one_member_rows(model, x, y, epsilons, as_clip(config["attack"].get("clip")), batch_size)
    clean_error = clean_scores(model, x, y, batch_size)[0]
    return {"rows": [{"job_id": job_id, **row, "clean_error": clean_error} for row in rows]}


def evaluation_stage(cfg: DictConfig, sweep_dir: Path, jobs: list[Job], force: bool = False
                     ) -> tuple[pd.DataFrame, dict[str, str]]:
    """evaluations.csv over the complete jobs, one part per job, recomputed only where the job's checkpoint, the
    settings or this stage's code changed. Its W&B run holds the table. Returns it and the failed tasks' reasons."""
    metrics = complete_jobs(sweep_dir, jobs)
    settings = OmegaConf.to_container(cfg.evaluation, resolve=True)
    gpus = settings.pop("gpu", 0)
    settings.pop("enabled", None)
    calls = {}
    for job in jobs:
        if job.id in metrics:
            inputs = {"job": checkpoints(sweep_dir, [job.id], metrics), "code": fingerprint(EVALUATION_SOURCES),
                      **settings}
            calls[part_key(inputs)] = (job.id, str(job_dir(sweep_dir, job)), settings)
    table, outcome = table_from_parts(sweep_dir, "evaluation", evaluate_job, calls, COLUMNS, gpus=gpus,
                                      retries=cfg.retries, force=force)
    stage_failures("evaluation", outcome)
    store.atomic_write(sweep_dir / EVALUATIONS, lambda tmp: table.to_csv(tmp, index=False))
    log_stage(sweep_dir, jobs, "evaluation", {"evaluations": table})
    return table, outcome.failed
