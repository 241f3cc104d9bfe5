"""Bad input to `python -m jobs.train` ends with exit code 2 and one line on stderr, `error: ...`, naming the value.

The commands run as subprocesses, as a user runs them, a few at a time.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import run_command

SMALL = ["logger=none", "trainer.max_epochs=1", "data.limit=100", "eval.epsilons=[0.1]"]
CASES = {
    "negative eps": (["regularizer=adversarial", "regularizer.eps=-0.1"], "regularizer.eps=-0.1"),
    "eps of a regularizer without one": (["regularizer.eps=-0.1"], "regularizer.eps"),
    "alpha above 1": (["regularizer=adversarial", "regularizer.alpha=1.5"], "regularizer.alpha=1.5"),
    "unknown model": (["model=nosuch"], "nosuch"),
    "unknown regularizer": (["regularizer=nosuch"], "nosuch"),
    "unknown data": (["data=nosuch"], "nosuch"),
    "logistic on 10 classes": (["model=logistic"], "10 classes"),
    "no training data": (["data.limit=0"], "data.limit=0"),
    "no pgd steps": (["attack=pgd", "attack.steps=0"], "attack.steps=0"),
    "negative epsilon": (["eval.epsilons=[-0.1]"], "-0.1"),
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_input")

    def run(item):
        name, (overrides, _) = item
        folder = root / name.replace(" ", "_")
        return name, run_command(["jobs.train", *SMALL, *overrides, f"hydra.run.dir={folder}"], timeout=240)

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        return dict(pool.map(run, CASES.items()))


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_exit_code_2(results, case):
    result, (_, named) = results[case], CASES[case]
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, f"exit code {result.returncode}; stderr ends:\n{result.stderr[-2000:]}"
    assert lines and lines[-1].startswith("error: "), result.stderr[-2000:]
    assert named in lines[-1], lines[-1]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]

