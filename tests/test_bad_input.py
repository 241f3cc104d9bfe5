"""Bad input to any command ends with exit code 2 and one line on stderr, `error: ...`, naming the value.

Every case runs in this process, through the command's own `main` (what `python -m` runs); a handful also run as
subprocesses, as a user runs them.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import sys
from types import SimpleNamespace

import pytest

from tests.support.commands import run_command

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
    "epsilon above the pixel range": (["eval.epsilons=[1.5]"], "eval.epsilons=1.5"),
    "negative alpha": (["regularizer=adversarial", "regularizer.alpha=-0.5"], "regularizer.alpha=-0.5"),
    "unknown attack": (["attack=nosuch"], "unknown attack 'nosuch'"),
    "ensemble of zero members": (["model=ensemble", "model.size=0"], "model.size=0"),
    "pgd negative step": (["attack=pgd", "attack.step_fraction=-0.1"], "attack.step_fraction=-0.1"),
    "zero batch size": (["data.batch_size=0"], "data.batch_size=0"),
    "early stopping without patience": (["early_stopping={monitor: val/error, eps: 0.25, patience: 0}"],
                                        "early_stopping.patience=0"),
    "early stopping on a metric never logged": (["early_stopping={monitor: val/nosuch, eps: 0.25, patience: 1}"],
                                                "early_stopping.monitor='val/nosuch'"),
    "missing data set": (["data=mnist", "data.root={tmp}/empty", "data.download=false"], "download it"),
    "corrupted data file": (["data=fashion_mnist", "data.root={tmp}/corrupt", "data.download=false"],
                            "corrupted data file"),
    "non-writable output folder": (["hydra.run.dir=/proc/harness/out"], "hydra.run.dir=/proc/harness/out"),
    "data folder not given": (["data=folder"], "data.root is required"),
    "override not in the config": (["nosuchkey=1"], "nosuchkey"),
    "unknown callback": (["callbacks=[nosuch]"], "unknown callbacks 'nosuch'; choose one of: lr_monitor"),
    "unknown logger among several": (["logger=[csv,nosuch]"], "unknown logger 'nosuch'; choose one of: csv"),
    "a callback that needs a logger but has none": (["callbacks=[lr_monitor]"], "callbacks=[lr_monitor]"),
    "unknown experiment": (["jobs.sweep", "experiment=nosuch"], "unknown experiment 'nosuch'"),
    "empty sweep grid": (["jobs.sweep", "sweep.grid.model=", "dir={tmp}/sweep", "plan_only=true"], "sweep.grid.model"),
    "invalid sweep grid": (["jobs.sweep", "sweep.grid.model=a,,(", "dir={tmp}/sweep", "plan_only=true"],
                           "invalid sweep.grid"),
    "unknown option in the grid": (["jobs.sweep", "sweep.grid.model=softmax,nosuch", "dir={tmp}/sweep",
                                    "plan_only=true"], "nosuch"),
    "empty grid axis as a list": (["jobs.sweep", "sweep.grid.model=[]", "dir={tmp}/sweep", "plan_only=true"],
                                  "'model=[]' chooses no model"),
    "grid axis that is not a key": (["jobs.sweep", "sweep.grid.nosuchkey=1,2", "dir={tmp}/sweep", "plan_only=true"],
                                    "nosuchkey is not a key of the job config"),
    "transfer source matching no setting": (["jobs.sweep", "transfer.sources=[nosuch]", "dir={tmp}/sweep",
                                             "plan_only=true"], "transfer.sources: 'nosuch' matches no setting"),
    "transfer pairs": (["jobs.sweep", "transfer.pairs=some", "dir={tmp}/sweep", "plan_only=true"],
                       "transfer.pairs='some'"),
    "rerun": (["jobs.sweep", "rerun=sometimes", "dir={tmp}/sweep", "plan_only=true"], "rerun='sometimes'"),
    "sweep on a missing data folder": (["jobs.sweep", 'sweep.overrides=["data=folder","data.root={tmp}/nofolder"]',
                                        "dir={tmp}/sweep", "plan_only=true"], "nofolder: no such folder"),
    "non-writable sweep folder": (["jobs.sweep", "dir=/proc/harness/sweep"], "dir=/proc/harness/sweep"),
    "transfer on a folder that is not a sweep": (["jobs.transfer", "dir={tmp}"], "is not a sweep directory"),
    "report on a folder that is not a sweep": (["jobs.report", "dir={tmp}"], "is not a sweep directory"),
}
COMMANDS = ("jobs.sweep", "jobs.transfer", "jobs.report")


def corrupt_fashion_mnist(folder):
    """Fashion-MNIST files whose headers promise more values than they hold."""
    folder.mkdir(parents=True)
    for split in ("train", "t10k"):
        header = b"\x00\x00\x08\x03" + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
        (folder / f"{split}-images-idx3-ubyte").write_bytes(header + b"\x01" * 20)
        labels = b"\x00\x00\x08\x01" + (10).to_bytes(4, "big") + b"\x01" * 10
        (folder / f"{split}-labels-idx1-ubyte").write_bytes(labels)


def command(case: str, root) -> list[str]:
    """The case's `python -m` arguments, with its folders under `root`."""
    args = [a.replace("{tmp}", str(root)) for a in CASES[case][0]]
    if args[0] in COMMANDS:
        return args
    return ["jobs.train", *SMALL, f"hydra.run.dir={root / case.replace(' ', '_')}", *args]


def run_in_process(args: list[str], monkeypatch) -> SimpleNamespace:
    """`python -m <args>` as this process: the module's `main` with that argv; its exit code and stderr."""
    module = importlib.import_module(args[0])
    monkeypatch.setattr(sys, "argv", list(args))
    stderr, returncode = io.StringIO(), 0
    with contextlib.redirect_stderr(stderr):
        try:
            module.main()
        except SystemExit as exit:
            returncode = exit.code
    return SimpleNamespace(returncode=returncode, stderr=stderr.getvalue())


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_input")
    corrupt_fashion_mnist(folder / "corrupt" / "FashionMNIST" / "raw")
    return folder


def assert_one_line_error(result, named: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, f"exit code {result.returncode}; stderr ends:\n{result.stderr[-2000:]}"
    assert lines and lines[-1].startswith("error: "), result.stderr[-2000:]
    assert named in lines[-1], lines[-1]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_exit_code_2(root, case, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)                 # Hydra's outputs/ of a command never land in the checkout
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert_one_line_error(run_in_process(command(case, root), monkeypatch), CASES[case][1])


END_TO_END = ["negative eps", "unknown model", "missing data set", "unknown experiment",
              "transfer on a folder that is not a sweep"]


@pytest.mark.slow
@pytest.mark.parametrize("case", END_TO_END)
def test_bad_input_as_a_user_runs_it(root, case):
    assert_one_line_error(run_command(command(case, root), timeout=240), CASES[case][1])
