"""benchmarks/gpu_check.sh, the GPU check, run end to end on the CPU at its quick size (the same script a GPU
machine runs with --device cuda)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.gpu_check import MODELS

ROOT = Path(__file__).resolve().parent.parent


def check(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HARNESS_PYTHON": sys.executable}
    return subprocess.run(["bash", "benchmarks/gpu_check.sh", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_the_gpu_check_runs_end_to_end_on_the_cpu(tmp_path):
    result = check("--device", "cpu", "--quick", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [job["model"] for job in report["jobs"]] == list(MODELS)
    assert {job["device"] for job in report["jobs"]} == {"cpu"}
    assert {"fgsm", "pgd", "apgd", "rubbish"} <= set(report["evaluations"][0]["attacks"])
    assert [row["processes"] for row in report["packing"]] == [1, 2]
    assert {device for row in report["packing"] for device in row["devices"]} == {"cpu"}
    assert report["micro"]["maxout_epoch"]["seconds"] > 0
    assert "| packing 2 processes |" in result.stdout and (tmp_path / "gpu_check.md").read_text() in result.stdout


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible")
def test_cuda_without_a_gpu_is_one_line():
    result = check("--device", "cuda", "--quick")
    assert result.returncode == 2 and result.stderr.strip().startswith("error: --device cuda")
