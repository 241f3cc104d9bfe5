"""Shared fixtures: configs composed with Hydra's compose API, the embedded digits, small trained models."""
from __future__ import annotations

import copy
import os
import re

import pytest
import torch

import pipeline.data

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


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's Chromium, installed when it is missing (the test is skipped where it cannot be)."""
    from tests.support.chromium import chromium_for_tests

    return chromium_for_tests()


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """Two 1-CPU Ray nodes on loopback with token auth, one cluster per test module (fault tests kill its nodes)."""
    from pipeline.cluster.local import RayCluster

    with RayCluster(tmp_path_factory.mktemp("ray"), num_cpus=1) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 embedded MNIST digits."""
    return pipeline.data.mnist5k()


@pytest.fixture(scope="session")
def mnist_splits():
    """Train and test splits of the default data config (mnist5k, 70/10/20)."""
    from tests.support.configs import data_module   # here: a pytest run from another folder has no `tests` package

    data = data_module()
    return data.splits["train"], data.splits["test"]


@pytest.fixture(scope="session")
def softmax_model(mnist_splits):
    """A softmax regression trained on mnist5k, and 500 test digits. Tests get their own copy."""
    (x, y), (x_test, y_test) = mnist_splits
    from pipeline.models import Softmax
    from pipeline.regularizers import Regularizer
    from tests.support.training import train_sgd

    model = train_sgd(lambda: Softmax(x.shape[1:], int(y.max()) + 1), x, y, Regularizer(), epochs=5)
    return model, x_test[:500], y_test[:500]


@pytest.fixture
def softmax(softmax_model):
    model, x, y = softmax_model
    return copy.deepcopy(model), x, y
