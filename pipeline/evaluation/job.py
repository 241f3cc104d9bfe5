"""One job's whole evaluation, the body of one evaluation task: its evaluations.csv rows (`rows`) and diagnostics.csv
rows (`diagnostics`), on the GPU the task was given, else the CPU."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from pipeline import store
from pipeline.attacks import as_clip, clean_scores
from pipeline.data import test_set
from pipeline.devices import full_float32, task_device
from pipeline.evaluation.diagnostics import check_rows, job_diagnostics
from pipeline.evaluation.rows import evaluate_attacks, one_member_rows, rubbish_row


@full_float32()   # float32 exactly, as on the CPU (no TF32)
def evaluate_job(job_id: str, job_dir: str, settings: Mapping[str, Any]) -> dict[str, list[dict]]:
    """Every evaluation of one job (the body of one task): {"rows": [...]}, its evaluations.csv rows, then its
    diagnostics.csv rows (those with a `check`), and the seconds each attack took ("seconds")."""

    config = store.read_config(Path(job_dir))
    device = task_device()   # the GPU Ray assigned this task, else the CPU
    model = store.load_model(job_dir, device)
    x, y = (t.to(device) for t in test_set(config, Path(job_dir) / store.CONFIG))
    batch_size = int(settings["batch_size"])
    epsilons = [float(e) for e in settings["epsilons"]]
    rows, fooled = evaluate_attacks(model, x, y, settings["attacks"], settings["clips"], epsilons, batch_size,
                                    bool(settings.get("exact", True)), job_id)
    if settings.get("rubbish"):
        rows.append(rubbish_row(model, x.shape[1:], int(settings["rubbish"]), batch_size))
    if hasattr(model, "members"):
        rows += one_member_rows(model, x, y, epsilons, as_clip(config["attack"].get("clip")), batch_size)
    clean_error = clean_scores(model, x, y, batch_size)[0]
    checks = []
    if settings.get("diagnostics"):
        curve = store.read_metrics(Path(job_dir))["curve"]
        checks = check_rows(job_id, job_diagnostics(model, x, y, rows, fooled, epsilons, curve, settings))
    return {"rows": [{"job_id": job_id, **row, "clean_error": clean_error} for row in rows] + checks}
