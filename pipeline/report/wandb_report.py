"""A W&B Report of a sweep, built with wandb-workspaces from the sweep's synced runs.

Offline runs must be uploaded first: without an API key this prints the `wandb sync` command and builds nothing.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.stages.plan import Job
from pipeline.tracking import api_key_configured


def offline_runs(sweep_dir: Path) -> list[Path]:
    return sorted(Path(sweep_dir).glob("**/wandb/offline-run-*"))


def sync_command(sweep_dir: Path) -> str:
    return "wandb sync " + " ".join(str(p) for p in offline_runs(sweep_dir))


def report_blocks(sweep_name: str, project: str, entity: str) -> list[Any]:
    import wandb_workspaces.reports.v2 as wr

    runs = wr.Runset(entity=entity, project=project, name=sweep_name, filters=f"Group = '{sweep_name}'",
                     groupby=["choices.model", "choices.regularizer"])
    return [
        wr.H1(f"Harness sweep '{sweep_name}'"),
        wr.P("FGSM error and confidence per job, training curves, and the transfer matrix. "
             "The local report.html of the sweep directory holds the same tables."),
        wr.PanelGrid(runsets=[runs], panels=[
            wr.LinePlot(title="validation error", x="epoch", y=["val/error"]),
            wr.LinePlot(title="training loss", x="epoch", y=["train/loss"]),
            wr.BarPlot(title="clean test error", metrics=["clean_error"]),
            wr.MediaBrowser(title="plots", media_keys=["plots/error_vs_eps", "plots/confidence_vs_eps"]),
        ]),
    ]


def publish_report(sweep_dir: Path, jobs: list[Job], sweep_name: str) -> str | None:
    """Save the report to W&B and return its URL; None (with the sync command printed) when offline."""
    logger = jobs[0].config.get("logger", {}) if jobs else {}
    if not api_key_configured() or logger.get("mode") == "offline":
        print("W&B report: runs are offline. Upload them first, with an API key configured:\n  "
              f"{sync_command(sweep_dir)}\nthen run this command again.")
        return None
    import wandb
    import wandb_workspaces.reports.v2 as wr

    project = logger.get("project") or "harness"
    entity = logger.get("entity") or wandb.Api().default_entity
    report = wr.Report(project=project, entity=entity, title=f"Harness sweep '{sweep_name}'",
                       blocks=report_blocks(sweep_name, project, entity))
    report.save()
    print(f"W&B report: {report.url}")
    return report.url
