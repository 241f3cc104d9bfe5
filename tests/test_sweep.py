"""The main pipeline on a real two-node Ray cluster (loopback): train, resume, transfer, report, W&B."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipeline.cluster.local import RayCluster

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def run(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env={**os.environ, **env, "WANDB_MODE": "offline"},
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with RayCluster(tmp_path_factory.mktemp("ray"), num_cpus=1) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def sweep(cluster, tmp_path_factory):
    """The smoke experiment (6 jobs) run once on the two-node cluster, then run again."""
    sweep_dir = tmp_path_factory.mktemp("sweep") / "smoke"
    args = ["jobs.sweep", "experiment=smoke", "cluster=ray", f"cluster.address={cluster.address}", f"dir={sweep_dir}"]
    first = run(args, cluster.env)
    assert first.returncode == 0, first.stderr[-3000:]
    report = (sweep_dir / "report.md").read_text()
    second = run(args, cluster.env)
    assert second.returncode == 0, second.stderr[-3000:]
    return sweep_dir, first, second, report


def job_metrics(sweep_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("jobs/*/metrics.json"))]


def test_every_job_completes_on_both_nodes(sweep, cluster):
    sweep_dir, first, _, _ = sweep
    metrics = job_metrics(sweep_dir)
    assert len(metrics) == 6
    assert "trained 6, reused 0, failed 0" in first.stderr
    nodes = {m["ray_node_id"] for m in metrics}
    assert nodes == set(cluster.node_ids().values())


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
    # one input gradient per source model (the test set fits one batch), whatever the number of ε
    assert json.loads((sweep_dir / "transfer.json").read_text())["input_gradients"] == len(ids)


def test_rerun_trains_nothing_and_reproduces_the_report(sweep):
    sweep_dir, _, second, report = sweep
    assert "trained 0, reused 6, failed 0" in second.stderr
    assert (sweep_dir / "report.md").read_text() == report


def test_report_files(sweep):
    sweep_dir = sweep[0]
    summary = pd.read_csv(sweep_dir / "summary.csv")
    assert len(summary) == 6 * 7                     # job x eval.epsilons
    html = (sweep_dir / "report.html").read_text()
    for plot in ("error_vs_eps.png", "confidence_vs_eps.png", "transfer_eps0.25.png"):
        assert (sweep_dir / "plots" / plot).stat().st_size > 5000
        assert plot in html
    assert len(list((sweep_dir / "plots").glob("examples_*.png"))) == 6
    assert "Paper vs this run" in html and "99.9%" in html   # the paper's softmax number beside ours


def test_wandb_runs_share_the_sweep_group_and_hold_the_transfer_table(sweep):
    from tests.support.wandb_records import read_run

    sweep_dir = sweep[0]
    runs = [read_run(p) for p in sweep_dir.glob("**/offline-run-*")]
    train = [r for r in runs if r.job_type == "train"]
    assert len(train) >= 6 and {r.group for r in runs} == {"smoke"}
    transfer = [r for r in runs if r.job_type == "transfer"]
    assert transfer, "no transfer run"
    table = transfer[-1].table("transfer")
    assert len(table["data"]) == len(pd.read_csv(sweep_dir / "transfer.csv"))


def test_transfer_stage_recomputes_the_same_table(sweep, cluster):
    sweep_dir = sweep[0]
    before = pd.read_csv(sweep_dir / "transfer.csv")
    result = run(["jobs.transfer", f"dir={sweep_dir}", "cluster=ray", f"cluster.address={cluster.address}",
                  ], cluster.env)
    assert result.returncode == 0, result.stderr[-2000:]
    pd.testing.assert_frame_equal(before, pd.read_csv(sweep_dir / "transfer.csv"))


@pytest.mark.parametrize("stage", ["jobs.transfer", "jobs.report"])
def test_stages_refuse_a_directory_that_is_not_a_sweep(stage, tmp_path):
    result = run([stage, f"dir={tmp_path}"], {})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: dir=")
