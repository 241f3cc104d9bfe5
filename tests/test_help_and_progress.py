"""What a person at a terminal sees: `--help` lists the real config groups with their options and examples, and
jobs.train draws Lightning's progress bar in a terminal only."""
from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time

import pytest

from tests.support.commands import ROOT, run_command
from pipeline.config import CONF_DIR, group_options

pytestmark = pytest.mark.slow

SMALL = ["logger=none", "trainer.max_epochs=1", "data.limit=200", "eval.epsilons=[0.0,0.25]"]
BAR = "Epoch 0: 100%"   # Lightning's TQDM bar at the end of the first epoch


@pytest.mark.parametrize("app", ["jobs.train", "jobs.sweep"])
def test_help_lists_every_group_with_its_options_and_examples(app):
    result = run_command([app, "--help"], timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    groups = sorted(path.name for path in CONF_DIR.iterdir() if path.is_dir() and path.name != "hydra")
    for group in groups:                                     # generated from conf/, so a new option shows up
        assert f"{group}: {', '.join(group_options(group))}" in lines
    examples = [line.strip() for line in lines if line.strip().startswith(f"python -m {app}")]
    assert len(examples) >= 3


def run_in_terminal(args: list[str], timeout: float = 300) -> tuple[int, str]:
    """`python -m <args>` with stdout and stderr on a pseudo-terminal, as in an interactive shell."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env.update(WANDB_MODE="disabled", PYTHONIOENCODING="utf-8")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))   # 40 × 120: tqdm sizes its bar
    process = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                               stdout=slave, stderr=slave)
    os.close(slave)
    output, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 1.0)[0]:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:          # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output.append(chunk)
        process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
    return process.returncode, b"".join(output).decode("utf-8", errors="replace")


def test_progress_bar_in_a_terminal_not_in_a_pipe_and_not_against_the_command_line(tmp_path):
    code, terminal = run_in_terminal(["jobs.train", *SMALL, f"hydra.run.dir={tmp_path / 'tty'}"])
    assert code == 0, terminal[-2000:]
    assert BAR in terminal and "clean error" in terminal

    piped = run_command(["jobs.train", *SMALL, f"hydra.run.dir={tmp_path / 'pipe'}"], timeout=300)
    assert piped.returncode == 0, piped.stderr[-2000:]
    assert "clean error" in piped.stdout and "Epoch 0" not in piped.stdout + piped.stderr

    code, chosen = run_in_terminal(["jobs.train", *SMALL, "trainer.enable_progress_bar=false",
                                    f"hydra.run.dir={tmp_path / 'off'}"])
    assert code == 0, chosen[-2000:]
    assert "clean error" in chosen and "Epoch 0" not in chosen
