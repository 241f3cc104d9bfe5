"""A job that fails under `hydra/launcher=harness_ray` in a user's own Hydra app shows what Hydra's basic launcher
shows: its own exception, file and line, in its job.log and in the last line of the command (issue 29, part 7)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ray]

ROOT = Path(__file__).resolve().parent.parent

APP = '''import hydra


def check(x):
    if x == 2:
        raise ValueError(f"x={x} is not allowed here")


@hydra.main(version_base="1.3", config_path=None, config_name=None)
def main(cfg):
    print("running with", cfg.x)
    check(cfg.x)


if __name__ == "__main__":
    main()
'''


def test_a_failing_job_names_its_own_file_and_line(tmp_path):
    app = tmp_path / "myapp.py"
    app.write_text(APP)
    raised = next(n for n, line in enumerate(APP.splitlines(), 1) if "raise ValueError" in line)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "disabled"}
    env.pop("HYDRA_FULL_ERROR", None)
    done = subprocess.run([sys.executable, str(app), "-m", "hydra/launcher=harness_ray", "+x=1,2",
                           f"hydra.sweep.dir={tmp_path / 'out'}"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]
    log = (tmp_path / "out" / "1" / "job.log").read_text()
    assert f'File "{app}", line {raised}, in check' in log and "ValueError: x=2 is not allowed here" in log, log
    assert "site-packages" not in log                                    # Hydra's frames left out, as it does
    reason = json.loads((tmp_path / "out" / "1" / "failure.json").read_text())["reason"]
    assert reason == f"ValueError: x=2 is not allowed here ({app}:{raised})"
    assert done.stderr.strip().splitlines()[-1].endswith(f"failed: {reason}"), done.stderr[-3000:]
    assert not (tmp_path / "out" / "0" / "failure.json").exists()
