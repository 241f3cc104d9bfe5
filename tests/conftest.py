"""Shared fixtures: configs composed with Hydra's compose API, the embedded digits, small trained models."""
from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import pytest
import torch
import torch.nn.functional as F
from omegaconf import DictConfig

import pipeline.data
from pipeline.config import compose_job, hydra_context

ROOT = Path(__file__).resolve().parent.parent

# What CI installs (or the tests install themselves): in CI (CI=true) a test skipped for lack of one is a failure.
MUST_RUN_IN_CI = re.compile(r"slurm|chromium|torchattacks", re.IGNORECASE)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--reverse-order", action="store_true",
                     help="run the collected tests in reverse order (each test must hold in any order)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--reverse-order"):
        items.reverse()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    # The README test's skips name the test that runs the command instead (test_slurm.py, ...): not a lost test.
    if (report.skipped and os.environ.get("CI", "").lower() == "true" and isinstance(report.longrepr, tuple)
            and not report.nodeid.startswith("tests/test_readme.py")):
        reason = report.longrepr[2]
        if MUST_RUN_IN_CI.search(reason):
            report.outcome = "failed"
            report.longrepr = f"skipped in CI, where it must run: {reason}"


def compose(*overrides: str, config_name: str = "config") -> DictConfig:
    """A job config as `python -m jobs.train <overrides>` composes it, with `choices` filled in the same way."""
    with hydra_context():
        return compose_job(overrides, config_name)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's Chromium, installed when it is missing (the test is skipped where it cannot be)."""
    from tests.support.chromium import chromium_for_tests

    return chromium_for_tests()


@pytest.fixture(scope="session")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 embedded MNIST digits."""
    return pipeline.data.mnist5k()


def data_module(*overrides: str):
    from pipeline.config import instantiate

    cfg = compose(*overrides)
    data = instantiate(cfg.data, "data", seed=cfg.seed)
    data.setup()
    return data


def fit_softmax(x: torch.Tensor, y: torch.Tensor, epochs: int = 5, seed: int = 0) -> torch.nn.Module:
    """The paper's shallow softmax trained with plain SGD (no Lightning), for attack tests."""
    from pipeline.models import Softmax

    torch.manual_seed(seed)
    model = Softmax(x.shape[1:], int(y.max()) + 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), 100):
            index = order[start: start + 100]
            optimizer.zero_grad()
            F.cross_entropy(model(x[index]), y[index]).backward()
            optimizer.step()
    model.zero_grad(set_to_none=True)
    return model.eval()


def train_sgd(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, regularizer: Any, epochs: int,
              seed: int | None = 0) -> torch.nn.Module:
    """Plain SGD (lr .1, momentum .5, batches of 100) on the regularizer's objective, with the model's constraint
    after each step, as a job's training step does; `seed` reseeds torch first (None: go on from its state)."""
    if seed is not None:
        torch.manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    generator = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for index in torch.randperm(len(y), generator=generator).split(100):
            optimizer.zero_grad()
            regularizer.backward(model, x[index], y[index])
            optimizer.step()
            if hasattr(model, "constrain"):
                model.constrain()
    model.zero_grad(set_to_none=True)
    return model.eval()


@pytest.fixture(scope="session")
def mnist_splits():
    """Train and test splits of the default data config (mnist5k, 70/10/20)."""
    data = data_module()
    return data.splits["train"], data.splits["test"]


@pytest.fixture(scope="session")
def softmax_model(mnist_splits):
    """A softmax regression trained on mnist5k, and 500 test digits. Tests get their own copy."""
    (x, y), (x_test, y_test) = mnist_splits
    model = fit_softmax(x, y)
    return model, x_test[:500], y_test[:500]


@pytest.fixture
def softmax(softmax_model):
    model, x, y = softmax_model
    return copy.deepcopy(model), x, y


def train_briefly(tmp_path: Path, *overrides: str, batches: int | None = None) -> dict[str, Any]:
    """Build a job's data, model and regularizer from the config and train it a few steps on the CPU with Lightning
    (the module and Trainer of a real job). Returns the model, its parameters before training, and the last loss."""
    import pytorch_lightning as pl

    from pipeline.config import instantiate
    from pipeline.job import build, quiet_lightning
    from pipeline.module import AdversarialModule

    quiet_lightning()
    cfg = compose("logger=none", "trainer.max_epochs=1", "data.limit=200", *overrides)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    data, model, regularizer, _ = build(cfg)
    model.initialize(*data.splits["train"])
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    module = AdversarialModule(model, regularizer, instantiate(cfg.optimizer, "optimizer"))
    trainer = instantiate(cfg.trainer, "trainer", logger=False, default_root_dir=str(tmp_path), accelerator="cpu",
                          limit_train_batches=batches or 1.0, limit_val_batches=1)
    trainer.fit(module, data.train_dataloader(), data.val_dataloader())
    return {"model": model, "before": before, "loss": float(trainer.callback_metrics["train/loss"]),
            "cfg": cfg, "data": data, "steps": trainer.global_step}


def environment(**env: str | None) -> dict[str, str]:
    """The environment of a command a test starts: this checkout's code first on the path (from any folder), W&B
    disabled unless `env` says otherwise (a variable given as None is removed)."""
    result = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    path = [str(ROOT), *filter(None, result.get("PYTHONPATH", "").split(os.pathsep))]
    result.update({"WANDB_MODE": "disabled", "PYTHONIOENCODING": "utf-8", "PYTHONPATH": os.pathsep.join(path)})
    for name, value in env.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = value
    return result


def run_command(args: Sequence[str], timeout: float = 300, cwd: Path | None = None,
                **env: str | None) -> subprocess.CompletedProcess:
    """`python -m <args>` as a user runs it, in `cwd` (default: a fresh temporary folder, so that what the command
    writes relative to its folder, such as Hydra's outputs/, never lands in the checkout)."""
    with tempfile.TemporaryDirectory(prefix="harness-cwd-") as scratch:
        return subprocess.run([sys.executable, "-m", *args], cwd=cwd or scratch, env=environment(**env),
                              capture_output=True, text=True, encoding="utf-8", timeout=timeout)
