"""Extra evaluations of every complete job, beyond its own FGSM curve: the attacks an honest evaluation adds,
rubbish inputs and, for ensembles, FGSM crafted on one member.

Rows of evaluations.csv: job_id, evaluation, clip, eps, error, confidence, confidence_wrong, clean_error, where
`evaluation` is
    <attack name>   each attack of the sweep's `evaluation.attacks` (FGSM with true or predicted labels,
                    random-start FGSM, PGD) at each of `evaluation.epsilons`, for each of `evaluation.clips`
                    ("none": the paper's unclipped attack; "0-1": clipped to the pixel range)
    rubbish         `evaluation.rubbish` inputs drawn from N(0, I) (the paper's Appendix A): error is the share
                    the model gives more than 0.5 probability on some class, confidence their mean confidence
    one_member      ensembles only: FGSM crafted on the first member and scored on the ensemble, with the job's
                    own attack clipping (compare it with the job's own FGSM error)
Every error is scored against the true labels. One Ray task per job when Ray is up (on a GPU when the task has
one), else in this process.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from omegaconf import OmegaConf

from pipeline import store
from pipeline.attacks import Clip, predict

COLUMNS = ["job_id", "evaluation", "clip", "eps", "error", "confidence", "confidence_wrong", "clean_error"]


def test_set(config: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """The test split a job was evaluated on (on the CPU)."""
    from pipeline.job import instantiate

    cfg = OmegaConf.create(dict(config))
    data = instantiate(cfg.data, "data", seed=cfg.seed)
    data.setup()
    return data.splits["test"]


def clip_name(clip: Sequence[float] | None) -> str:
    return "none" if clip is None else f"{clip[0]:g}-{clip[1]:g}"


def as_clip(clip: Sequence[float] | None) -> Clip:
    return None if clip is None else (float(clip[0]), float(clip[1]))


def attack_rows(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: Mapping[str, Any],
                clips: Sequence[Sequence[float] | None], epsilons: Sequence[float], batch_size: int) -> list[dict]:
    """Each attack (a conf/attack-style config) at every ε, once per clipping."""
    from pipeline.job import instantiate

    rows = []
    for name, attack_config in attacks.items():
        for clip in clips:
            attack = instantiate(OmegaConf.create(dict(attack_config)), f"evaluation.attacks.{name}",
                                 clip=list(clip) if clip is not None else None)
            curve = attack.curve(model, x, y, list(epsilons), batch_size=batch_size)
            rows += [{"evaluation": name, "clip": clip_name(clip), **row} for row in curve.rows()]
    return rows


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
    from pipeline.transfer import transfer_rows

    rows, _ = transfer_rows("member", {"member": model.members[0], "ensemble": model}, x, y, epsilons, clip,
                            batch_size=batch_size)
    return [{"evaluation": "one_member", "clip": clip_name(clip), "eps": r["eps"], "error": r["error"],
             "confidence": r["confidence"], "confidence_wrong": r["confidence_wrong"]}
            for r in rows if r["target"] == "ensemble"]


def evaluate_job(job_id: str, job_dir: str, settings: Mapping[str, Any]) -> list[dict]:
    """Every evaluation of one job (the body of one Ray task)."""
    from pipeline.job import clean_scores

    config = OmegaConf.to_container(OmegaConf.load(Path(job_dir) / store.CONFIG), resolve=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
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
    return [{"job_id": job_id, **row, "clean_error": clean_error} for row in rows]


def run_evaluations(job_dirs: Mapping[str, Path], settings: Mapping[str, Any], cpus: float = 1) -> list[dict]:
    """Every job's evaluations: one Ray task per job when Ray is up, else one job after another here."""
    import ray

    if not ray.is_initialized():
        return [row for job, directory in job_dirs.items() for row in evaluate_job(job, str(directory), settings)]
    task = ray.remote(max_calls=0)(evaluate_job).options(num_cpus=cpus, num_gpus=settings.get("gpu", 0),
                                                         max_retries=2, name="evaluate")
    refs = [task.remote(job, str(directory), dict(settings)) for job, directory in job_dirs.items()]
    return [row for rows in ray.get(refs) for row in rows]


def leaks_labels(rows: Any) -> Any:
    """Adversarial accuracy above clean accuracy: the attack helps the model, a sign of label leaking."""
    return rows["error"] < rows["clean_error"] - 1e-9
