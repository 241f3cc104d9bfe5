"""W&B as its users expect it, read back from the offline run files: summaries (define_metric), one run per attempt,
the sweep's stage runs (transfer table, heatmaps, the report page) and the W&B Report built on them."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from tests.support.configs import compose
from support.wandb_records import read_run

SWEEP = "wandb-test"


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_DIR", raising=False)


def runs_in(folder: Path) -> list:
    """Every offline run under folder/wandb, oldest first."""
    return [read_run(path.parent) for path in sorted(Path(folder).glob("wandb/offline-run-*/run-*.wandb"))]


@pytest.mark.slow
def test_each_attempt_is_its_own_run_and_its_summary_holds_the_best_val_error_and_the_curve(tmp_path, offline):
    from pipeline.training.job import run_job

    job_dir = tmp_path / "job"
    cfg = compose("logger=wandb", "trainer.max_epochs=3", "data.limit=300", "eval.epsilons=[0.0,0.1,0.25]")
    attempts = [run_job(cfg, job_dir, run_name="softmax-test") for _ in range(2)]   # e.g. a retry, force=true

    runs = runs_in(job_dir)
    assert [run.id for run in runs] == ["job-1", "job-2"]          # two runs, never two under one id
    for run, metrics in zip(runs, attempts):
        val = [row["val/error"] for row in run.history if "val/error" in row]
        assert len(val) == 3
        assert run.summary["val/error"] == {"min": pytest.approx(min(val))}   # the best epoch, not the last
        for row in metrics["curve"]:                                          # the final FGSM curve, one key per ε
            assert run.summary[f"eval/error_eps{row['eps']:g}"] == pytest.approx(row["error"])
            assert run.summary[f"eval/confidence_eps{row['eps']:g}"] == pytest.approx(row["confidence"])
        assert run.summary["eval/curve"]["_type"] == "table-file"
        assert run.summary["clean_error"] == pytest.approx(metrics["clean_error"])


@pytest.fixture
def sweep_runs(tmp_path, offline):
    """A sweep directory with the transfer and summary stage runs as the stages log them: the transfer table, a
    real heatmap from the report's plotting code, and a self-contained report page."""
    from pipeline.report.plots import plot_transfer
    from pipeline.planned_job import Job
    from pipeline.stages.sweep_dir import log_stage

    sweep_dir = tmp_path / "sweep"
    (sweep_dir / "plots").mkdir(parents=True)
    config = OmegaConf.to_container(compose("logger=wandb", f"logger.wandb.group={SWEEP}"), resolve=True)
    jobs = [Job("a1", ("model=softmax",), config)]
    transfer = pd.DataFrame({"source": ["softmax", "softmax", "maxout", "maxout"],
                             "target": ["softmax", "maxout", "softmax", "maxout"],
                             "eps": [0.25] * 4, "error": [0.99, 0.6, 0.8, 0.9]})
    plot_transfer(transfer, 0.25, sweep_dir / "plots" / "transfer_eps0.25.png")
    page = "<!doctype html><html><head><title>Harness</title></head><body><h1>Sweep ε=0.25</h1></body></html>"
    (sweep_dir / "report.html").write_text(page, encoding="utf-8")

    log_stage(sweep_dir, jobs, "transfer", {"transfer": transfer})
    log_stage(sweep_dir, jobs, "summary", {"summary": transfer}, sorted((sweep_dir / "plots").glob("*.png")),
              html=sweep_dir / "report.html")
    return sweep_dir, {run.job_type: run for run in runs_in(sweep_dir)}, transfer, page, jobs


def test_the_summary_run_holds_the_report_page_and_the_heatmaps(sweep_runs):
    _, runs, _, page, _ = sweep_runs
    summary = runs["summary"]
    assert summary.group == SWEEP and summary.id.startswith(f"{SWEEP}-summary-")
    report = summary.summary["report"]
    assert report["_type"] == "html-file"
    assert (summary.dir / "files" / report["path"]).read_text(encoding="utf-8") == page   # as written
    assert summary.summary["plots/transfer_eps0.25"]["_type"] == "image-file"


def test_the_wandb_report_shows_the_transfer_heatmaps_and_table_the_stage_runs_hold(sweep_runs):
    import wandb_workspaces.reports.v2 as wr
    from wandb_workspaces import expr

    from pipeline.report.wandb_report import heatmaps, report_blocks

    sweep_dir, runs, transfer, _, _ = sweep_runs
    keys = heatmaps(sweep_dir)
    assert keys == ["plots/transfer_eps0.25"]
    assert set(keys) <= set(runs["summary"].summary)                 # what the summary run logged
    assert runs["transfer"].table("transfer")["data"] == transfer.values.tolist()

    # A W&B Report cannot be saved without network; its blocks are plain wandb_workspaces objects.
    blocks = report_blocks(SWEEP, "harness", "someone", keys)
    grids = [block for block in blocks if isinstance(block, wr.PanelGrid)]
    panels = [(panel, grid.runsets[0]) for grid in grids for panel in grid.panels]
    [(heatmap_panel, heatmap_runs)] = [(panel, runs) for panel, runs in panels
                                       if isinstance(panel, wr.MediaBrowser) and panel.title == "transfer heatmaps"]
    assert heatmap_panel.media_keys == keys
    [(table_panel, table_runs)] = [(panel, runs) for panel, runs in panels
                                   if isinstance(panel, wr.WeavePanelSummaryTable)]
    assert table_panel.table_name == "transfer"
    for runset, job_type in ((heatmap_runs, "summary"), (table_runs, "transfer")):
        filters = {f.key.name: f.value for f in expr.expr_to_filters(runset.filters).filters}
        assert filters == {"group": SWEEP, "jobType": job_type}     # the stage's run of this sweep


def test_each_run_of_a_stage_is_its_own_wandb_run(sweep_runs):
    from pipeline.stages.sweep_dir import log_stage

    sweep_dir, _, transfer, _, jobs = sweep_runs
    log_stage(sweep_dir, jobs, "summary", {"summary": transfer})   # the report stage again (jobs.report)
    ids = [run.id for run in runs_in(sweep_dir) if run.job_type == "summary"]
    assert len(ids) == 2 and len(set(ids)) == 2   # jobs.report after jobs.sweep: never two runs under one id


@pytest.mark.slow
def test_logger_none_wins_over_wandb_mode(tmp_path):
    """`logger=none` under WANDB_MODE=offline: no wandb/ folder, and wandb is never imported (so no W&B service
    process can start). PYTHONPROFILEIMPORTTIME lists every module the command imported."""
    from tests.support.commands import run_command

    result = run_command(["jobs.train", "logger=none", "trainer.max_epochs=1", "data.limit=100",
                          "eval.epsilons=[0.1]", f"hydra.run.dir={tmp_path / 'job'}"],
                         WANDB_MODE="offline", PYTHONPROFILEIMPORTTIME="1")
    assert result.returncode == 0, result.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    assert "pytorch_lightning" in imported                    # the listing is real
    assert not {name for name in imported if name.split(".")[0] == "wandb"}
    assert not list(tmp_path.rglob("wandb")) and (tmp_path / "job" / "metrics.json").exists()


@pytest.mark.slow
def test_several_loggers_a_callback_and_the_model_as_an_artifact_without_a_wandb_warning(tmp_path):
    """`logger=[wandb,csv] callbacks=[lr_monitor]`: both loggers get every epoch's metrics and the learning rate,
    the W&B run holds model.pt as an Artifact of type `model`, and wandb prints no warning (it used to print
    `The anonymous setting has no effect` in every job)."""
    import base64
    import hashlib

    from tests.support.commands import run_command

    job_dir = tmp_path / "job"
    result = run_command(["jobs.train", "logger=[wandb,csv]", "callbacks=[lr_monitor]", "trainer.max_epochs=2",
                          "data.limit=200", "eval.epsilons=[0.1]", f"hydra.run.dir={job_dir}"],
                         WANDB_MODE="offline", WANDB_SILENT="false")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "wandb: WARNING" not in result.stderr and "anonymous" not in result.stderr, result.stderr[-2000:]

    [csv_file] = job_dir.glob("csv/version_*/metrics.csv")
    rows = pd.read_csv(csv_file)
    assert rows["val/error"].notna().sum() == 2 and rows["lr-SGD"].dropna().tolist() == [0.1, 0.1]

    [run] = runs_in(job_dir)
    assert [row["lr-SGD"] for row in run.history if "lr-SGD" in row] == [0.1, 0.1]
    [artifact] = [a for a in run.artifacts if a.type == "model"]    # (the curve's table is one of type run_table)
    assert artifact.name == f"model-{run.id}"
    [entry] = artifact.manifest.contents
    model = (job_dir / "model.pt").read_bytes()
    assert entry.path == "model.pt" and entry.size == len(model)
    assert entry.digest == base64.b64encode(hashlib.md5(model).digest()).decode()   # W&B's digest of the file
