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

from tests.support.commands import environment
from pipeline import store
from pipeline.cluster.local import RayCluster
from pipeline.cluster.processes import all_procs, descendants

pytestmark = [pytest.mark.slow, pytest.mark.ray]
SMALL = ["experiment=smoke", "sweep.grid.model=softmax,rbf", "report.images=0"]   # 4 quick jobs
SECRET = "s3cr3t" * 7   # a W&B key given to the commands below: it must not reach any file they write


def sweep_command(sweep_dir: Path, address: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "jobs.sweep", *SMALL, "cluster=ray", f"cluster.address={address}",
            f"dir={sweep_dir}", *extra]


def run(command: list[str], env: dict[str, str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """`command` from the folder `cwd` (a test's own: never the checkout), W&B offline."""
    return subprocess.run(command, cwd=cwd, env=environment(**{**env, "WANDB_MODE": "offline"}),
                          capture_output=True, text=True, timeout=timeout)


def complete(sweep_dir: Path) -> list[Path]:
    return [d for d in sorted((sweep_dir / "jobs").glob("*")) if store.is_complete(d)]


def wait_for(condition, driver: subprocess.Popen, timeout: float = 300, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert driver.poll() is None, f"the driver ended (exit code {driver.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def tasks_running(ray_cluster: RayCluster, stage: str = "train") -> list[int]:
    """This cluster's worker processes busy with a task of `stage` (Ray titles them `ray::<stage>`)."""
    pids = ray_cluster.pids()
    return [p.pid for p in all_procs() if p.pid in pids and p.cmdline.startswith(f"ray::{stage}")]



@pytest.fixture(scope="module")
def reference(ray_cluster, tmp_path_factory):
    """An uninterrupted run of the small sweep."""
    folder = tmp_path_factory.mktemp("reference")
    sweep_dir = folder / "smoke"
    result = run(sweep_command(sweep_dir, ray_cluster.address), {**ray_cluster.env, "WANDB_API_KEY": SECRET}, folder)
    assert result.returncode == 0, result.stderr[-3000:]
    assert SECRET not in result.stdout + result.stderr
    return sweep_dir


def test_killed_driver_resumes_without_retraining(ray_cluster, reference, tmp_path):
    sweep_dir = tmp_path / "smoke"
    driver = subprocess.Popen(sweep_command(sweep_dir, ray_cluster.address), cwd=tmp_path,
                              env=environment(**{**ray_cluster.env, "WANDB_MODE": "offline"}),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for(lambda: len(complete(sweep_dir)) >= 1, driver, what="a first finished job")
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    # Ray ends the dead driver's tasks: wait until none runs, so that none finishes after the count below
    deadline = time.monotonic() + 120
    while tasks_running(ray_cluster):
        assert time.monotonic() < deadline, f"the dead driver's tasks still run: {tasks_running(ray_cluster)}"
        time.sleep(0.2)
    finished = len(complete(sweep_dir))
    assert finished < 4, "the driver finished before it was killed; the test proves nothing"
    resumed = run(sweep_command(sweep_dir, ray_cluster.address), ray_cluster.env, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"trained {4 - finished}, reused {finished}, failed 0" in resumed.stderr
    assert (sweep_dir / "report.md").read_text() == (reference / "report.md").read_text()


def test_corrupted_results_are_recomputed_not_loaded(ray_cluster, reference, tmp_path):
    sweep_dir = tmp_path / "smoke"
    subprocess.run(["cp", "-r", str(reference), str(sweep_dir)], check=True)
    jobs = complete(sweep_dir)
    checkpoint = jobs[0] / store.CHECKPOINT
    checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])   # truncated
    (jobs[1] / store.METRICS).write_text('{"schema": 1, "status": "comp')                  # torn write
    assert len(complete(sweep_dir)) == 2
    result = run(sweep_command(sweep_dir, ray_cluster.address), ray_cluster.env, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "trained 2, reused 2, failed 0" in result.stderr
    assert (sweep_dir / "report.md").read_text() == (reference / "report.md").read_text()


def test_diverging_job_fails_with_its_reason_and_the_sweep_goes_on(ray_cluster, tmp_path):
    sweep_dir = tmp_path / "diverge"
    result = run(sweep_command(sweep_dir, ray_cluster.address, "sweep.grid.model=softmax",
                               "sweep.grid.regularizer=none", "sweep.grid.optimizer.lr=0.1,1e37"), ray_cluster.env,
                 tmp_path)
    assert result.returncode == 1
    assert "trained 1, reused 0, failed 1" in result.stderr
    failures = [json.loads(p.read_text()) for p in sweep_dir.glob("jobs/*/failure.json")]
    assert len(failures) == 1 and "Diverged" in failures[0]["reason"]
    logs = [(path.parent / store.LOG).read_text() for path in sweep_dir.glob("jobs/*/failure.json")]
    assert len(logs) == 1 and "Traceback" in logs[0] and "Diverged" in logs[0]   # readable without the node
    report = (sweep_dir / "report.md").read_text()
    assert "## Failed jobs" in report and "Diverged" in report
    assert pd.read_csv(sweep_dir / "summary.csv")["job_id"].nunique() == 1


# Neither waits: refused before any job is queued, the command ends by itself (the timeouts only catch a hang;
# how long Python and Ray take to start on a loaded machine is not what these test).
def test_a_job_larger_than_any_node_is_refused_while_planning(ray_cluster, tmp_path):
    ran = tmp_path / "big"   # a sweep that ran before: a refused one leaves its folder as it was
    ran.mkdir()
    for name in ("plan.json", "sweep.yaml", "sweep.log"):
        (ran / name).write_text(f"{name} of the sweep that ran\n")
    result = run(sweep_command(ran, ray_cluster.address, "resources.gpu=8"), ray_cluster.env, tmp_path, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: resources.cpu=1, resources.gpu=8")
    assert {p.name: p.read_text() for p in ran.iterdir() if p.name != ".hydra"} == {   # .hydra: Hydra's, per command
        name: f"{name} of the sweep that ran\n" for name in ("plan.json", "sweep.yaml", "sweep.log")}


def test_unreachable_cluster_is_a_clear_error_in_bounded_time(tmp_path):
    result = run(sweep_command(tmp_path / "s", "127.0.0.1:9"), {}, tmp_path, timeout=300)
    assert result.returncode == 2
    assert "cluster.address=127.0.0.1:9 is unreachable" in result.stderr.strip().splitlines()[-1]


def test_lost_worker_node_mid_sweep(tmp_path):
    """Kill the worker node's raylet while it runs a job: Ray runs that job again on the head node (from its last
    epoch), and every job ends with exactly one complete result and at most one W&B run per attempt."""
    from tests.support.wandb_records import read_run

    with RayCluster(tmp_path / "ray", num_cpus=1) as ray_cluster:
        nodes = ray_cluster.node_ids()
        sweep_dir = tmp_path / "smoke"
        driver = subprocess.Popen(sweep_command(sweep_dir, ray_cluster.address,
                                                'sweep.overrides=["trainer.max_epochs=40","data.limit=600"]'),
                                  cwd=tmp_path, env=environment(**{**ray_cluster.env, "WANDB_MODE": "offline"}),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        def running_on_worker() -> Path | None:
            for directory in sweep_dir.glob("jobs/*"):
                tries = store.read_attempts(directory)
                finished = (directory / store.METRICS).exists()
                if tries and tries[-1].get("ray_node_id") == nodes["worker"] and not finished:
                    return directory
            return None

        wait_for(lambda: running_on_worker() is not None, driver, what="a job running on the worker node")
        # the node is frozen, then lost: its raylet and workers stop at once (the job cannot finish in between)
        raylet = ray_cluster.worker_raylet_pid()
        node = [raylet, *(p.pid for p in descendants(raylet, all_procs()))]
        for pid in node:
            os.kill(pid, signal.SIGSTOP)
        victim = running_on_worker()
        assert victim is not None, "the job finished before the node was lost; nothing was proven"
        for pid in node:
            os.kill(pid, signal.SIGKILL)
        _, stderr = driver.communicate(timeout=600)
    assert driver.returncode == 0, stderr[-3000:]
    assert "failed 0" in stderr
    tries = store.read_attempts(victim)
    assert [t["ray_node_id"] for t in tries] == [nodes["worker"], nodes["head"]]
    for directory in sorted((sweep_dir / "jobs").iterdir()):
        assert store.is_complete(directory) and len(list(directory.glob(store.METRICS))) == 1
        attempts = store.read_attempts(directory)
        run_ids = [path.name.split("-", 3)[-1] for path in directory.glob("wandb/offline-run-*")]   # -<time>-<id>
        # an attempt killed before W&B started has no run; none shares an id with another attempt's
        assert len(set(run_ids)) == len(run_ids) and set(run_ids) <= {f"{directory.name}-{t['attempt']}"
                                                                      for t in attempts}
        last = f"{directory.name}-{len(attempts)}"   # the attempt that finished wrote its whole record log
        assert read_run(next(directory.glob(f"wandb/offline-run-*-{last}"))).id == last


def test_a_sweep_on_shared_storage(ray_cluster, tmp_path):
    """Started from another folder with a relative dir under umask 022: the results land under that folder (not
    under the workers' working folders), every file is readable by the team, and each job's output is in its
    job directory."""
    def team_umask() -> None:
        os.umask(0o022)

    result = subprocess.run(sweep_command(Path("shared") / "smoke", ray_cluster.address), cwd=tmp_path,
                            env=environment(**{**ray_cluster.env, "WANDB_MODE": "offline"}), capture_output=True,
                            text=True, timeout=600, preexec_fn=team_umask)
    assert result.returncode == 0, result.stderr[-3000:]
    sweep_dir = tmp_path / "shared" / "smoke"
    assert len(complete(sweep_dir)) == 4
    workers = {Path(f"/proc/{pid}/cwd").resolve() for pid in ray_cluster.pids() if Path(f"/proc/{pid}").exists()}
    assert workers and not [folder for folder in workers - {tmp_path} if (folder / "shared" / "smoke").exists()]
    files = [sweep_dir / name for name in ("plan.json", "sweep.yaml", "transfer.csv", "transfer_settings.csv",
                                           "evaluations.csv", "summary.csv", "report.html", "report.md")]
    files += [d / name for d in complete(sweep_dir) for name in (store.METRICS, store.CHECKPOINT, store.CONFIG,
                                                                  store.ATTEMPTS, store.LOG)]
    files += list(sweep_dir.glob("parts/*/*.csv"))
    assert {f"{path.relative_to(sweep_dir)}: {path.stat().st_mode & 0o777:o}" for path in files} == \
        {f"{path.relative_to(sweep_dir)}: 644" for path in files}


def test_wandb_server_down_training_goes_on_offline_with_one_warning(tmp_path):
    job_dir = tmp_path / "job"
    env = {"WANDB_API_KEY": "0" * 40, "WANDB_BASE_URL": "http://127.0.0.1:9", "WANDB_MODE": ""}
    result = subprocess.run([sys.executable, "-m", "jobs.train", "trainer.max_epochs=1", "data.limit=300",
                             f"hydra.run.dir={job_dir}"], cwd=tmp_path, env=environment(**env),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert store.is_complete(job_dir)
    warnings = [line for line in (result.stdout + result.stderr).splitlines() if "W&B server unreachable" in line]
    assert len(warnings) == 1
    assert list(job_dir.glob("wandb/offline-run-*/*.wandb"))


def test_no_secret_is_written_anywhere(reference, tmp_path):
    """The W&B key given to a job and to a sweep (the reference run) reaches none of their files: job and sweep
    directories, the W&B offline runs of jobs and stages, job.log and sweep.log, and the folders they ran from."""
    job_dir = tmp_path / "job"
    result = subprocess.run([sys.executable, "-m", "jobs.train", "trainer.max_epochs=1", "data.limit=300",
                             f"hydra.run.dir={job_dir}"], cwd=tmp_path,
                            env=environment(WANDB_API_KEY=SECRET, WANDB_MODE="offline"),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert SECRET not in result.stdout + result.stderr
    written = [path for folder in (tmp_path, reference.parent) for path in folder.rglob("*") if path.is_file()]
    names = {path.name for path in written}
    assert {store.METRICS, store.LOG, "sweep.log", "sweep.yaml"} <= names                     # what was scanned
    assert any(path.suffix == ".wandb" and "/jobs/" not in str(path) for path in written)   # a stage's W&B run
    for path in written:
        assert SECRET.encode() not in path.read_bytes(), path
