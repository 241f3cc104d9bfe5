"""The main pipeline on a real two-node Ray cluster (loopback): train, resume, transfer, report, W&B."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from glob import glob
from pathlib import Path

import matplotlib
import pandas as pd
import pytest

from tests.support.commands import run_command
from tests.support.chromium import load_page
from tests.support.embedded import PNG, embedded_pngs

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def run(args: list[str], env: dict[str, str], timeout: float = 600, cwd: Path | None = None
        ) -> subprocess.CompletedProcess:
    return run_command(args, timeout=timeout, cwd=cwd, **{**env, "WANDB_MODE": "offline"})



@pytest.fixture(scope="module")
def sweep(ray_cluster, tmp_path_factory):
    """The smoke experiment (6 jobs) run once on the two-node cluster, then run again."""
    sweep_dir = tmp_path_factory.mktemp("sweep") / "smoke"
    args = ["jobs.sweep", "experiment=smoke", "cluster=ray", f"cluster.address={ray_cluster.address}",
            f"dir={sweep_dir}"]
    first = run(args, ray_cluster.env)
    assert first.returncode == 0, first.stderr[-3000:]
    report = (sweep_dir / "report.md").read_text()
    second = run(args, ray_cluster.env)
    assert second.returncode == 0, second.stderr[-3000:]
    return sweep_dir, first, second, report


@pytest.fixture
def sweep_copy(sweep, tmp_path) -> Path:
    """A copy of the finished sweep, for tests that run a stage on it (the shared one stays as the sweep left it)."""
    copy = tmp_path / "smoke"
    shutil.copytree(sweep[0], copy)
    return copy


def job_metrics(sweep_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("jobs/*/metrics.json"))]


def test_every_job_completes_on_both_nodes(sweep, ray_cluster):
    sweep_dir, first, _, _ = sweep
    metrics = job_metrics(sweep_dir)
    assert len(metrics) == 6
    assert "trained 6, reused 0, failed 0" in first.stderr
    nodes = {m["ray_node_id"] for m in metrics}
    assert nodes == set(ray_cluster.node_ids().values())


def test_transfer_table_has_every_cell(sweep):
    sweep_dir = sweep[0]
    transfer = pd.read_csv(sweep_dir / "transfer.csv")
    ids = {m["job_id"] for m in job_metrics(sweep_dir)}
    cells = set(zip(transfer["source"], transfer["target"], transfer["eps"]))
    assert cells == {(s, t, e) for s in ids for t in ids for e in (0.0, 0.25)}
    assert transfer["error"].between(0, 1).all()
    # the diagonal is the white-box attack: it equals each job's own FGSM error at that ε
    own = {(m["job_id"], r["eps"]): r["error"] for m in job_metrics(sweep_dir) for r in m["curve"]}
    for row in transfer[transfer["source"] == transfer["target"]].itertuples():
        assert row.error == pytest.approx(own[(row.source, row.eps)], abs=1e-9)
    # the second run of the sweep computed no part again (one task: one seed)
    meta = json.loads((sweep_dir / "transfer.json").read_text())
    assert meta["computed"] == 0 and meta["reused"] == meta["tasks"] == 1 and meta["rows"] == len(transfer)


def test_every_stage_reports_progress_and_sweep_log_says_where_the_time_went(sweep):
    sweep_dir, first, second, _ = sweep
    for stage, total in (("train", 6), ("transfer", 1), ("evaluation", 6), ("report", 5)):
        for run in (first, second):
            lines = [line for line in run.stderr.splitlines() if line.startswith(f"[{stage}] ")]
            assert lines and lines[-1].startswith(f"[{stage}] {total}/{total} done, 0 running, 0 failed"), lines
            assert len(lines) == len(set(lines))                      # a line per event, not per poll
    log = (sweep_dir / "sweep.log").read_text().splitlines()
    for stage in ("plan", "ray", "train", "transfer", "evaluation", "report"):
        assert sum(f" {stage}: " in line for line in log) == 2       # each run of the sweep
    assert re.fullmatch(r".* finished in \d+s: plan \d+s, ray \d+s, train \d+s, transfer \d+s, evaluation \d+s, "
                        r"report \d+s", log[-1])
    assert log[-1].split(" ", 2)[2] in second.stderr                 # the last line printed is the same


def test_rerun_trains_nothing_and_reproduces_the_report(sweep):
    sweep_dir, _, second, report = sweep
    assert "trained 0, reused 6, failed 0" in second.stderr
    assert (sweep_dir / "report.md").read_text() == report


def test_report_files(sweep):
    sweep_dir = sweep[0]
    summary = pd.read_csv(sweep_dir / "summary.csv")
    assert len(summary) == 6 * 7                     # job x eval.epsilons
    html = (sweep_dir / "report.html").read_text()
    embedded = embedded_pngs(html)
    for plot in ("error_vs_eps.png", "confidence_vs_eps.png", "transfer_eps0.25.png"):
        drawn = (sweep_dir / "plots" / plot).read_bytes()
        assert drawn.startswith(PNG) and len(drawn) > 5000
        assert embedded[f"plots/{plot}"] == drawn                   # the plot itself is in the page, not its name
    assert len(list((sweep_dir / "plots").glob("examples_*.png"))) == 6
    assert "Paper vs this run" in html
    softmax = summary[(summary["model"] == "softmax") & (summary["regularizer"] == "none") & (summary["eps"] == 0.25)]
    row = next(line for line in (sweep_dir / "report.md").read_text().splitlines()
               if line.startswith("| FGSM (ε=.25) fools the shallow softmax"))
    assert f"error: {100 * softmax['error'].mean():.1f}%" in row    # our measured number in the claims table


def test_report_html_shows_every_plot_when_copied_alone(sweep, tmp_path, chromium_path):
    alone = tmp_path / "report.html"                          # no plots/ beside it
    alone.write_bytes((sweep[0] / "report.html").read_bytes())
    page = load_page(alone)
    assert len(page.image_widths) == (sweep[0] / "report.md").read_text().count("](plots/") >= 12
    assert all(width > 0 for width in page.image_widths), page.image_widths
    assert page.console_errors == []
    assert page.requests[0] == alone.as_uri() and all(url.startswith("data:") for url in page.requests[1:])


def test_wandb_runs_share_the_sweep_group_and_hold_the_transfer_table(sweep):
    from tests.support.wandb_records import read_run

    sweep_dir = sweep[0]
    runs = [read_run(p) for p in sweep_dir.glob("**/offline-run-*")]
    train = [r for r in runs if r.job_type == "train"]
    assert len(train) >= 6 and {r.group for r in runs} == {"smoke"}
    transfer = [r for r in runs if r.job_type == "transfer"]
    assert transfer, "no transfer run"
    rows = len(pd.read_csv(sweep_dir / "transfer.csv"))
    assert all(len(run.table("transfer")["data"]) == rows for run in transfer)   # each run of the stage


def test_transfer_stage_recomputes_the_same_table(sweep, sweep_copy, ray_cluster, tmp_path):
    """`python -m jobs.transfer dir=<sweep>` with its parts removed computes every part again, the same table."""
    shutil.rmtree(sweep_copy / "parts" / "transfer")
    result = run(["jobs.transfer", f"dir={sweep_copy}", "cluster=ray", f"cluster.address={ray_cluster.address}"],
                 ray_cluster.env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    pd.testing.assert_frame_equal(pd.read_csv(sweep[0] / "transfer.csv"), pd.read_csv(sweep_copy / "transfer.csv"))
    meta = json.loads((sweep_copy / "transfer.json").read_text())
    assert meta["computed"] == meta["tasks"] == 1 and meta["reused"] == 0
    assert list(tmp_path.glob("outputs/stages/*"))                      # Hydra's folder: where the command ran


@pytest.mark.parametrize("stage", ["jobs.transfer", "jobs.report"])
def test_stages_refuse_a_directory_that_is_not_a_sweep(stage, tmp_path):
    result = run([stage, f"dir={tmp_path}"], {})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: dir=")


# --- the main job, as the README runs it ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def main_job(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """`python -m jobs.sweep` with its defaults, in a fresh folder, with no W&B key configured (a fresh home)."""
    folder = tmp_path_factory.mktemp("main")
    home = folder / "home"
    home.mkdir()
    env = {"HOME": str(home), "MPLCONFIGDIR": matplotlib.get_configdir()}     # (the font cache is kept)
    result = run_without_wandb_key(["jobs.sweep"], env, folder, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder, result


def run_without_wandb_key(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 300
                          ) -> subprocess.CompletedProcess:
    unset = {name: None for name in [*os.environ, "WANDB_MODE"] if name.startswith("WANDB_")}
    return run_command(args, timeout=timeout, cwd=cwd, **{**unset, **env})


def test_the_main_job_writes_the_report_where_the_readme_says(main_job):
    folder, result = main_job
    sweep_dir = folder / "outputs" / "sweeps" / "main"
    assert (sweep_dir / "report.html").stat().st_size > 0 and (sweep_dir / "report.md").exists()
    assert "[sweep] trained 6, reused 0, failed 0" in result.stderr
    summary = pd.read_csv(sweep_dir / "summary.csv")
    assert set(zip(summary["model"], summary["regularizer"])) == {(m, r) for m in ("softmax", "maxout", "rbf")
                                                                  for r in ("none", "adversarial")}
    assert summary["eps"].min() == 0 and summary["eps"].max() == pytest.approx(0.3)
    transfer = pd.read_csv(sweep_dir / "transfer.csv")
    assert transfer["source"].nunique() == transfer["target"].nunique() == 6
    assert len(glob(f"{sweep_dir}/jobs/*/wandb/offline-run-*")) == 6          # no key: W&B offline


def test_report_stage_rebuilds_the_report_and_names_the_wandb_sync_command_without_a_key(main_job):
    """`python -m jobs.report dir=outputs/sweeps/main wandb.report=true`, as the README runs it, with no key."""
    folder, _ = main_job
    sweep_dir = folder / "outputs" / "sweeps" / "main"
    written = (sweep_dir / "report.md").read_text()
    result = run_without_wandb_key(["jobs.report", "dir=outputs/sweeps/main", "wandb.report=true"],
                                   {"HOME": str(folder / "home"), "MPLCONFIGDIR": matplotlib.get_configdir()}, folder)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (sweep_dir / "report.md").read_text() == written
    sync = next(line.strip() for line in result.stdout.splitlines() if line.strip().startswith("wandb sync "))
    named = sorted(Path(path).resolve() for path in sync.split()[2:])
    assert named == sorted(path.resolve() for path in sweep_dir.glob("**/wandb/offline-run-*"))
    assert len([path for path in named if "/jobs/" in str(path)]) == 6
