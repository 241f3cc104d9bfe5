"""The installed environment and the project's shape."""
from __future__ import annotations

import importlib.metadata
import importlib.util

import pytest
import yaml

from tests.support.commands import run_command
from pipeline.config import CONF_DIR


def test_the_unified_lightning_package_is_not_installed_beside_pytorch_lightning():
    """Ray Train prefers `lightning.pytorch` when both are installed, and its callbacks then do not match our
    pytorch_lightning Trainer: keep exactly one."""
    assert importlib.util.find_spec("lightning") is None
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.version("lightning")


@pytest.mark.parametrize("group", ["data", "model", "regularizer", "attack", "optimizer", "trainer", "logger",
                                   "callbacks"])
def test_config_groups_exist(group):
    assert list((CONF_DIR / group).glob("*.yaml")), f"conf/{group} has no options"


@pytest.mark.slow
def test_train_prints_the_composed_config():
    result = run_command(["jobs.train", "--cfg", "job", "model=maxout", "regularizer=adversarial"], timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    cfg = yaml.safe_load(result.stdout)
    assert cfg["model"]["_target_"] == "pipeline.models.Maxout" and cfg["model"]["units"] == 240
    assert cfg["regularizer"]["_target_"] == "pipeline.regularizers.Adversarial"
    assert cfg["data"]["name"] == "mnist5k" and cfg["seed"] == 0
    assert set(cfg["eval"]) == {"epsilons", "batch_size"}
