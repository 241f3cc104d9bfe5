"""Preemption: a job killed after epoch k of n (SIGKILL, or SIGTERM as SLURM sends it at its time limit) and run
again trains only epochs k+1..n and ends with the same weights, byte for byte, as an uninterrupted run (CPU)."""
from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.support.commands import environment, run_command
from pipeline import store

pytestmark = pytest.mark.slow
EPOCHS = 20   # long enough that the kill lands before the end, on a fast machine too
# A maxout job with dropout, noise training and early stopping: every random state and callback must survive.
ARGS = ["sweep.grid.model=maxout", "sweep.grid.regularizer=sign_noise",
        f'sweep.overrides=["trainer.max_epochs={EPOCHS}","data.limit=2000","model.units=64","model.pieces=2",'
        '"logger=none","+early_stopping={monitor: val/fgsm_error, eps: 0.25, patience: 30}"]']


def command(sweep_dir: Path) -> list[str]:
    """The sweep's job 0 in this process, as a SLURM array task runs it."""
    return [sys.executable, "-m", "jobs.sweep", "task=0", f"dir={sweep_dir}", *ARGS]


def metrics(sweep_dir: Path) -> dict:
    return json.loads(Path(glob.glob(f"{sweep_dir}/jobs/*/{store.METRICS}")[0]).read_text())


def epochs_saved(sweep_dir: Path) -> int:
    found = glob.glob(f"{sweep_dir}/jobs/*/{store.LAST}")
    try:
        return torch.load(found[0], map_location="cpu", weights_only=False)["epoch"] + 1 if found else 0
    except (OSError, RuntimeError, EOFError):   # replaced while we read it
        return 0


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    sweep_dir = tmp_path_factory.mktemp("uninterrupted")
    result = subprocess.run(command(sweep_dir), cwd=sweep_dir, env=environment(), capture_output=True, text=True,
                            timeout=1200)
    assert result.returncode == 0, result.stderr[-2000:]
    return metrics(sweep_dir)


@pytest.mark.parametrize("sig, code", [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGTERM, 128 + signal.SIGTERM)])
def test_a_killed_job_resumes_from_its_last_epoch_and_ends_as_an_uninterrupted_run(uninterrupted, tmp_path, sig,
                                                                                    code):
    process = subprocess.Popen(command(tmp_path), cwd=tmp_path, env=environment(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    while epochs_saved(tmp_path) < 2:
        assert process.poll() is None, process.stderr.read()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGSTOP)       # frozen where it is: it cannot finish before the signal lands
    assert not glob.glob(f"{tmp_path}/jobs/*/{store.METRICS}"), "the job finished first; nothing was proven"
    os.killpg(process.pid, sig)
    if sig != signal.SIGKILL:
        os.killpg(process.pid, signal.SIGCONT)   # a stopped process handles TERM once it runs again
    process.wait(timeout=120)
    assert process.returncode == code            # SIGTERM: a non-zero exit, the job did not finish
    done = epochs_saved(tmp_path)
    assert 2 <= done < uninterrupted["epochs"]
    assert not glob.glob(f"{tmp_path}/jobs/*/{store.METRICS}")

    again = subprocess.run(command(tmp_path), cwd=tmp_path, env=environment(), capture_output=True, text=True,
                           timeout=1200)
    assert again.returncode == 0, again.stderr[-2000:]
    resumed = metrics(tmp_path)
    assert resumed["resumed_from_epoch"] == done and resumed["epochs_this_attempt"] == uninterrupted["epochs"] - done
    assert resumed["attempt"] == 2 and resumed["epochs"] == uninterrupted["epochs"]
    assert resumed["checkpoint"]["sha256"] == uninterrupted["checkpoint"]["sha256"]
    assert resumed["early_stopping"] == uninterrupted["early_stopping"]
    assert not glob.glob(f"{tmp_path}/jobs/*/{store.LAST}")     # complete: nothing left to resume


def test_an_array_task_whose_job_is_complete_does_nothing_and_force_retrains_it_from_scratch(tmp_path):
    """`jobs.sweep task=0` as a SLURM array task runs it: a second run leaves the complete job as it is; force=true
    trains it again without loading the last.ckpt an interrupted attempt left (here one Lightning cannot load)."""
    task = ["jobs.sweep", "task=0", f"dir={tmp_path / 'sweep'}", "sweep.grid.model=softmax",
            "sweep.grid.regularizer=none", 'sweep.overrides=["trainer.max_epochs=2","data.limit=100","logger=none"]']
    first = run_command(task, cwd=tmp_path)
    assert first.returncode == 0 and "[sweep] task 0: trained" in first.stderr, first.stderr[-2000:]
    (job,) = (tmp_path / "sweep" / "jobs").iterdir()
    files = {name: (job / name).read_bytes() for name in (store.METRICS, store.CHECKPOINT, store.ATTEMPTS)}

    again = run_command(task, cwd=tmp_path)
    assert again.returncode == 0 and "[sweep] task 0: already complete" in again.stderr, again.stderr[-2000:]
    assert {name: (job / name).read_bytes() for name in files} == files          # not a byte changed

    (job / store.LAST).write_bytes(b"not a checkpoint")
    forced = run_command([*task, "force=true"], cwd=tmp_path)
    assert forced.returncode == 0 and "[sweep] task 0: trained" in forced.stderr, forced.stderr[-2000:]
    metrics = store.read_metrics(job)
    assert metrics["attempt"] == 2 and not metrics.get("resumed_from_epoch")
    assert metrics["epochs_this_attempt"] == metrics["epochs"] == 2
    assert metrics["checkpoint"]["sha256"] == json.loads(files[store.METRICS])["checkpoint"]["sha256"]   # same run
    assert not (job / store.LAST).exists()
