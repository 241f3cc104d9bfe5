"""Faults survived on real parts: a lost Ray node, a killed driver, a diverging job, corrupted results, W&B down,
an unreachable cluster, a job too large for any node."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from pipeline import store
from pipeline.cluster.local import RayCluster

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow
SMALL = ["experiment=smoke", "sweep.grid.model=softmax,rbf", "report.images=0"]   # 4 quick jobs


def sweep_command(sweep_dir: Path, address: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "jobs.sweep", *SMALL, "cluster=ray", f"cluster.address={address}",
            f"dir={sweep_dir}", *extra]


def run(command: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, env={**os.environ, **env, "WANDB_MODE": "offline"},
                          capture_output=True, text=True, timeout=timeout)


def complete(sweep_dir: Path) -> list[Path]:
    return [d for d in sorted((sweep_dir / "jobs").glob("*")) if store.is_complete(d)]


def wait_for(condition, driver: subprocess.Popen, timeout: float = 300, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert driver.poll() is None, f"the driver ended (exit code {driver.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with RayCluster(tmp_path_factory.mktemp("ray"), num_cpus=1) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def reference(cluster, tmp_path_factory):
    """An uninterrupted run of the small sweep."""
    sweep_dir = tmp_path_factory.mktemp("reference") / "smoke"
    result = run(sweep_command(sweep_dir, cluster.address), cluster.env)
    assert result.returncode == 0, result.stderr[-3000:]
    return sweep_dir


def test_killed_driver_resumes_without_retraining(cluster, reference, tmp_path):
    sweep_dir = tmp_path / "smoke"
    driver = subprocess.Popen(sweep_command(sweep_dir, cluster.address), cwd=ROOT,
                              env={**cluster.env, "WANDB_MODE": "offline"}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for(lambda: len(complete(sweep_dir)) >= 1, driver, what="a first finished job")
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    time.sleep(5)   # Ray ends the dead driver's tasks; none may finish after the count below
    finished = len(complete(sweep_dir))
    assert finished < 4, "the driver finished before it was killed; the test proves nothing"
    resumed = run(sweep_command(sweep_dir, cluster.address), cluster.env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"trained {4 - finished}, reused {finished}, failed 0" in resumed.stderr
    assert (sweep_dir / "report.md").read_text() == (reference / "report.md").read_text()


def test_corrupted_results_are_recomputed_not_loaded(cluster, reference, tmp_path):
    sweep_dir = tmp_path / "smoke"
    subprocess.run(["cp", "-r", str(reference), str(sweep_dir)], check=True)
    jobs = complete(sweep_dir)
    checkpoint = jobs[0] / store.CHECKPOINT
    checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])   # truncated
    (jobs[1] / store.METRICS).write_text('{"schema": 1, "status": "comp')                  # torn write
    assert len(complete(sweep_dir)) == 2
    result = run(sweep_command(sweep_dir, cluster.address), cluster.env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "trained 2, reused 2, failed 0" in result.stderr
    assert (sweep_dir / "report.md").read_text() == (reference / "report.md").read_text()


def test_diverging_job_fails_with_its_reason_and_the_sweep_goes_on(cluster, tmp_path):
    sweep_dir = tmp_path / "diverge"
    result = run(sweep_command(sweep_dir, cluster.address, "sweep.grid.model=softmax",
                               "sweep.grid.regularizer=none", "sweep.grid.optimizer.lr=0.1,1e37"), cluster.env)
    assert result.returncode == 1
    assert "trained 1, reused 0, failed 1" in result.stderr
    failures = [json.loads(p.read_text()) for p in sweep_dir.glob("jobs/*/failure.json")]
    assert len(failures) == 1 and "Diverged" in failures[0]["reason"]
    report = (sweep_dir / "report.md").read_text()
    assert "## Failed jobs" in report and "Diverged" in report
    assert pd.read_csv(sweep_dir / "summary.csv")["job_id"].nunique() == 1


def test_a_job_larger_than_any_node_is_refused_while_planning(cluster, tmp_path):
    started = time.monotonic()
    result = run(sweep_command(tmp_path / "big", cluster.address, "resources.gpu=8"), cluster.env, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: resources.cpu=1, resources.gpu=8")
    assert time.monotonic() - started < 90


def test_unreachable_cluster_is_a_clear_error_in_bounded_time(tmp_path):
    started = time.monotonic()
    result = run(sweep_command(tmp_path / "s", "127.0.0.1:9"), {}, timeout=120)
    assert result.returncode == 2
    assert "cluster.address=127.0.0.1:9 is unreachable" in result.stderr.strip().splitlines()[-1]
    assert time.monotonic() - started < 60


def test_lost_worker_node_mid_sweep(tmp_path):
    """Kill the worker node's raylet while jobs run: Ray retries them on the head; every result exists once."""
    with RayCluster(tmp_path / "ray", num_cpus=1) as cluster:
        sweep_dir = tmp_path / "smoke"
        driver = subprocess.Popen(sweep_command(sweep_dir, cluster.address, 'sweep.overrides=["trainer.max_epochs=6","data.limit=600"]'),
                                  cwd=ROOT, env={**cluster.env, "WANDB_MODE": "offline"}, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        wait_for(lambda: len(list(sweep_dir.glob("jobs/*/config.yaml"))) >= 2, driver, what="two running jobs")
        os.kill(cluster.worker_raylet_pid(), signal.SIGKILL)
        _, stderr = driver.communicate(timeout=600)
    assert driver.returncode == 0, stderr[-3000:]
    assert "failed 0" in stderr
    metrics = [json.loads(p.read_text()) for p in sweep_dir.glob("jobs/*/metrics.json")]
    assert sorted(m["job_id"] for m in metrics) == sorted(d.name for d in (sweep_dir / "jobs").iterdir())
    assert len(metrics) == 4
    assert metrics[0]["ray_node_id"] in cluster.node_ids().values()


def test_wandb_server_down_training_goes_on_offline_with_one_warning(tmp_path):
    job_dir = tmp_path / "job"
    env = {"WANDB_API_KEY": "0" * 40, "WANDB_BASE_URL": "http://127.0.0.1:9", "WANDB_MODE": ""}
    result = subprocess.run([sys.executable, "-m", "jobs.train", "trainer.max_epochs=1", "data.limit=300",
                             f"hydra.run.dir={job_dir}"], cwd=ROOT, env={**os.environ, **env},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert store.is_complete(job_dir)
    warnings = [line for line in (result.stdout + result.stderr).splitlines() if "W&B server unreachable" in line]
    assert len(warnings) == 1
    assert list(job_dir.glob("wandb/offline-run-*/*.wandb"))


def test_no_secret_is_written_anywhere(tmp_path):
    secret = "s3cr3t" * 7
    job_dir = tmp_path / "job"
    result = subprocess.run([sys.executable, "-m", "jobs.train", "trainer.max_epochs=1", "data.limit=300",
                             f"hydra.run.dir={job_dir}"], cwd=ROOT,
                            env={**os.environ, "WANDB_API_KEY": secret, "WANDB_MODE": "offline"},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert secret not in result.stdout + result.stderr
    for path in job_dir.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
