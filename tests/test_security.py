"""Nobody else on the network runs code in a sweep: every Ray cluster Harness starts takes a fresh token, handed over
only through the environment. The local two-node cluster with the Ray launcher is checked in tests/test_launcher.py
and SLURM's sweep.sbatch in tests/test_slurm.py (their runs are live there already)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.cluster import auth
from tests.support.intruder import gcs_address, intrude, leaks, token_below

ROOT = Path(__file__).resolve().parent.parent
# One quick job, W&B offline (its files are searched for the token too), long enough for an intruder to try.
SWEEP = ["experiment=smoke", "sweep.grid.model=softmax", "sweep.grid.regularizer=none", "report.images=0",
         "transfer.enabled=false", "evaluation.enabled=false"]
STALE = "0123456789abcdef" * 4   # a wrong token that an earlier ray.init() left in ~/.ray/auth_token


@pytest.mark.slow
def test_single_machine_sweep_refuses_an_intruder_and_keeps_its_token_out_of_files(tmp_path):
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(STALE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k != "HYDRA_FULL_ERROR"}
    env.update(HOME=str(home), WANDB_MODE="offline")
    sweep_dir = tmp_path / "sweep"
    driver = subprocess.Popen([sys.executable, "-m", "jobs.sweep", *SWEEP, f"dir={sweep_dir}"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while (address := gcs_address(driver.pid)) is None:
            assert driver.poll() is None, f"the sweep ended before Ray started:\n{driver.communicate()[1][-3000:]}"
            assert time.monotonic() < deadline, "Ray did not start"
            time.sleep(0.5)
        token = token_below(driver.pid)
        verdict = intrude(address, tmp_path / "intruder")
        print(f"single-machine instance ({address}): intruder {verdict}")
        assert driver.poll() is None, "the sweep ended before the intruder was done: the test proves nothing"
        during = leaks(token, sweep_dir) if token else []
        _, stderr = driver.communicate(timeout=600)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert verdict.startswith("refused"), verdict
    assert driver.returncode == 0, stderr[-3000:]                         # despite the stale ~/.ray/auth_token
    assert "[sweep] trained 1, reused 0, failed 0" in stderr
    assert token and re.fullmatch(r"[0-9a-f]{64}", token), "the run has no fresh token"
    assert (home / ".ray" / "auth_token").read_text() == STALE          # the run's own token won, nothing written
    assert list(sweep_dir.rglob("offline-run-*")), "no W&B offline files to search"
    assert during == [] and leaks(token, sweep_dir) == []
    assert "Ray token authentication is off" not in stderr


def test_every_cluster_gets_a_fresh_token():
    first, second = auth.cluster_env(), auth.cluster_env()
    assert first[auth.MODE] == "token" and re.fullmatch(r"[0-9a-f]{64}", first[auth.TOKEN])
    assert first[auth.TOKEN] != second[auth.TOKEN]


@pytest.mark.parametrize("how", ["cluster.auth=false", "RAY_AUTH_MODE=disabled"])
def test_opting_out_prints_one_warning_line(how, monkeypatch, capsys):
    monkeypatch.setattr(auth, "_warned", False)
    if how.startswith("RAY_AUTH_MODE"):
        monkeypatch.setenv(auth.MODE, "disabled")
    for _ in range(2):   # the cluster's nodes and its driver: warned once
        assert auth.cluster_env(auth=how != "cluster.auth=false") == {auth.MODE: "disabled"}
    warning = capsys.readouterr().err.splitlines()
    assert len(warning) == 1 and warning[0].startswith(f"warning: Ray token authentication is off ({how})")
    assert "anyone who can reach this machine can run code as" in warning[0]


def test_sbatch_gets_its_exports_from_the_sweeps_overrides(monkeypatch, capsys):
    monkeypatch.delenv(auth.MODE, raising=False)
    monkeypatch.setattr(auth, "_warned", False)
    auth.main(["experiment=smoke", "+note='a b'"])
    on = capsys.readouterr()
    assert re.fullmatch(r"export RAY_AUTH_MODE=token RAY_AUTH_TOKEN=[0-9a-f]{64}\n", on.out) and on.err == ""
    auth.main(["experiment=smoke", "cluster.auth=false"])
    off = capsys.readouterr()
    assert off.out == "export RAY_AUTH_MODE=disabled\n" and "cluster.auth=false" in off.err


def test_a_driver_joins_with_the_users_token_file(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    for key in (auth.MODE, auth.TOKEN, auth.TOKEN_PATH):
        monkeypatch.delenv(key, raising=False)
    assert auth.join_env() == {}                          # no token anywhere: Ray's own default
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text(STALE)
    assert auth.join_env() == {auth.MODE: "token"}        # Ray reads the file; an explicit address needs the mode
    assert auth.join_env(auth=False) == {auth.MODE: "disabled"}
