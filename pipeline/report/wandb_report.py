"""A W&B Report of a sweep, built with wandb-workspaces from the sweep's synced runs.

Offline runs must be uploaded first: without an API key this prints the `wandb sync` command and builds nothing.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from pipeline.planned_job import Job
from pipeline.tracking import api_key_configured


def offline_runs(sweep_dir: Path) -> list[Path]:
    return sorted(Path(sweep_dir).glob("**/wandb/offline-run-*"))


def sync_command(sweep_dir: Path) -> str:
    return "wandb sync " + " ".join(str(p) for p in offline_runs(sweep_dir))


def heatmaps(sweep_dir: Path) -> list[str]:
    """The transfer heatmaps the report stage drew (plots/transfer_*.png), as the summary run logged them."""
    from pipeline.report.plots import PLOTS

    return [f"plots/{path.stem}" for path in sorted((Path(sweep_dir) / PLOTS).glob("transfer*.png"))]


def stage_run(sweep_name: str, project: str, entity: str, job_type: str) -> Any:
    """The runset of one stage's run of the sweep (job_type "transfer" or "summary", see Tracker.log_stage)."""
    import wandb_workspaces.reports.v2 as wr

    return wr.Runset(entity=entity, project=project, name=f"{sweep_name} {job_type}",
                     filters=f"Group = '{sweep_name}' and JobType = '{job_type}'")


def report_blocks(sweep_name: str, project: str, entity: str, transfer_heatmaps: Sequence[str] = ()) -> list[Any]:
    """The report's blocks: training and clean error per job, the attack plots, then the transfer matrix (the
    heatmaps `transfer_heatmaps` from the summary run, the long table from the transfer run)."""
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
        wr.H2("Transfer"),
        wr.P("Rows: the setting that crafts FGSM examples; columns: the setting that predicts them (error rate, "
             "mean over seeds; the diagonal is the white-box attack)."),
        wr.PanelGrid(runsets=[stage_run(sweep_name, project, entity, "summary")], panels=[
            wr.MediaBrowser(title="transfer heatmaps", media_keys=list(transfer_heatmaps)),
        ]),
        wr.PanelGrid(runsets=[stage_run(sweep_name, project, entity, "transfer")], panels=[
            wr.WeavePanelSummaryTable(table_name="transfer"),
        ]),
    ]


def publish_report(sweep_dir: Path, jobs: list[Job], sweep_name: str) -> str | None:
    """Save the report to W&B and return its URL; None (with the sync command printed) when offline."""
    logger = (jobs[0].config.get("logger") or {}).get("wandb") or {} if jobs else {}
    if not api_key_configured() or logger.get("mode") == "offline":
        print("W&B report: runs are offline. Upload them first, with an API key configured:\n  "
              f"{sync_command(sweep_dir)}\nthen run this command again.")
        return None
    import wandb
    import wandb_workspaces.reports.v2 as wr

    project = logger.get("project") or "harness"
    entity = logger.get("entity") or wandb.Api().default_entity
    report = wr.Report(project=project, entity=entity, title=f"Harness sweep '{sweep_name}'",
                       blocks=report_blocks(sweep_name, project, entity, heatmaps(sweep_dir)))
    report.save()
    print(f"W&B report: {report.url}")
    return report.url
