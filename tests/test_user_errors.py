"""What a researcher bringing their own data and models sees when something does not fit: one line that names the
bad value and what to do, with nothing of torch's before it (issue 29, part 7)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from pipeline.config import compose_job, hydra_context
from pipeline.errors import ConfigError
from pipeline.models import MLP
from pipeline.pretrained import load
from tests.support.configs import data_module


def test_labels_one_to_k_are_named_as_such(digits, tmp_path):
    """The embedded digits saved with labels 1..10, as MATLAB or R number classes."""
    index = torch.randperm(len(digits[1]), generator=torch.Generator().manual_seed(0))[:1200]   # sorted by digit
    x, y = (t[index].numpy() for t in digits)
    path = tmp_path / "digits.npz"
    np.savez(path, x_train=x[:1000], y_train=y[:1000] + 1, x_test=x[1000:], y_test=y[1000:] + 1)
    with pytest.raises(ConfigError, match=r"labels start at 1 \(1\.\.10\); expected 0\.\.9: subtract 1") as error:
        data_module("data=arrays", f"data.path={path}")
    assert "\n" not in str(error.value)
    np.savez(path, x_train=x[:1000], y_train=y[:1000], x_test=x[1000:], y_test=y[1000:])
    assert data_module("data=arrays", f"data.path={path}").num_classes == 10     # 0..9 is accepted


def test_the_state_dict_hint_is_a_command_hydra_accepts(tmp_path):
    path = tmp_path / "mlp.pt"
    torch.save(MLP([1, 28, 28], 10).state_dict(), path)
    with pytest.raises(ConfigError, match=r"holds weights only") as error:
        load(str(path))
    hint = next(word for word in str(error.value).split() if word.startswith("+model.architecture._target_="))
    with hydra_context():     # the hint, with the class filled in, composes
        cfg = compose_job(["model=pretrained", f"model.path={path}",
                           hint.replace("<module.Class>", "pipeline.models.MLP")])
    assert cfg.model.architecture._target_ == "pipeline.models.MLP"


def test_a_state_dict_that_does_not_fit_gives_one_short_line(tmp_path):
    path = tmp_path / "mlp.pt"
    torch.save(MLP([1, 28, 28], 10, hidden=[64]).state_dict(), path)
    with pytest.raises(ConfigError) as error:
        load(str(path), {"_target_": "pipeline.models.MLP", "hidden": [32]}, [1, 28, 28], 10)
    message = str(error.value)
    assert "is [64, 784] in the file, [32, 784] in the model" in message, message
    assert "\n" not in message and len(message) < 250, message
    torch.save(dict(list(MLP([1, 28, 28], 10, hidden=[32]).state_dict().items())[1:]), path)   # a key lost
    with pytest.raises(ConfigError, match=r"the file has no \S+ \(nor 0 other keys of the model\)"):
        load(str(path), {"_target_": "pipeline.models.MLP", "hidden": [32]}, [1, 28, 28], 10)


def test_a_torchscript_file_loads_without_torchs_deprecation_warnings(tmp_path):
    path = tmp_path / "net.ts"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))), str(path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load(str(path))
    assert not [w for w in caught if issubclass(w.category, FutureWarning)], [str(w.message) for w in caught]
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_quoted_zoo_names_get_the_command_that_works(tmp_path):
    """Hydra's grammar takes no quoted dict keys ("no viable alternative at input"); Harness names the fix, and the
    fixed override plans the zoo."""
    from hydra import compose, initialize_config_dir

    from pipeline.cli import check_zoo_models
    from pipeline.config import CONF_DIR
    from pipeline.stages.plan import plan

    (tmp_path / "a.pt").write_bytes(b"a")
    given = f"""zoo.models={{"a": {tmp_path / 'a.pt'}, 'b': {tmp_path / 'a.pt'}}}"""
    with pytest.raises(ConfigError, match="Hydra takes the names without quotes") as error:
        check_zoo_models(["experiment=zoo", given])
    fixed = str(error.value).split("; write ")[1].strip("'")
    assert "\n" not in str(error.value) and fixed == f"zoo.models={{a: {tmp_path / 'a.pt'}, b: {tmp_path / 'a.pt'}}}"
    check_zoo_models([fixed])
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("sweep", overrides=["experiment=zoo", fixed])
        assert sorted(job.config["model"]["name"] for job in plan(cfg.sweep, group=cfg.sweep.name)) == ["a", "b"]
