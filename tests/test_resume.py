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

from pipeline import store

ROOT = Path(__file__).resolve().parent.parent
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
    result = subprocess.run(command(sweep_dir), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return metrics(sweep_dir)


@pytest.mark.parametrize("sig, code", [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGTERM, 128 + signal.SIGTERM)])
def test_a_killed_job_resumes_from_its_last_epoch_and_ends_as_an_uninterrupted_run(uninterrupted, tmp_path, sig,
                                                                                    code):
    process = subprocess.Popen(command(tmp_path), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    while epochs_saved(tmp_path) < 2:
        assert process.poll() is None, process.stderr.read()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(process.pid, sig)
    process.wait(timeout=120)
    assert process.returncode == code            # SIGTERM: a non-zero exit, the job did not finish
    done = epochs_saved(tmp_path)
    assert 2 <= done < uninterrupted["epochs"]
    assert not glob.glob(f"{tmp_path}/jobs/*/{store.METRICS}")

    again = subprocess.run(command(tmp_path), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    resumed = metrics(tmp_path)
    assert resumed["resumed_from_epoch"] == done and resumed["epochs_this_attempt"] == uninterrupted["epochs"] - done
    assert resumed["attempt"] == 2 and resumed["epochs"] == uninterrupted["epochs"]
    assert resumed["checkpoint"]["sha256"] == uninterrupted["checkpoint"]["sha256"]
    assert resumed["early_stopping"] == uninterrupted["early_stopping"]
    assert not glob.glob(f"{tmp_path}/jobs/*/{store.LAST}")     # complete: nothing left to resume
