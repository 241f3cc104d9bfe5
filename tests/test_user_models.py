"""Benchmark your own models: a plain nn.Module from a package outside the repository trains in a sweep and loads
back; files trained elsewhere are evaluated without training; a zoo sweep compares them; the model contract is
checked before any work, one line per broken promise."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.support.configs import compose
from pipeline import load_model
from pipeline.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent

# A user's package: plain torch, no Harness import. Written by the tests into a folder outside the repository.
PACKAGE = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, hidden: int = 16):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x):
        return self.body(x)


class Probabilities(Net):
    def forward(self, x):
        return super().forward(x).softmax(dim=1)


class WrongShape(Net):
    def forward(self, x):
        return super().forward(x)[:, :3]


class Noisy(Net):
    def forward(self, x):
        return super().forward(x + 0.1 * torch.randn_like(x))


class ColourOnly(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 10, 28)

    def forward(self, x):
        return self.conv(x).flatten(1)


class Broken(Net):
    def __init__(self, hidden: int = 16):
        raise ValueError(f"hidden={hidden} is not a power of 4")
'''


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("userpkg")
    assert not folder.resolve().is_relative_to(ROOT)
    (folder / "mynet").mkdir()
    (folder / "mynet" / "__init__.py").write_text(textwrap.dedent(PACKAGE))
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))


def sweep(args: list[str], package: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": os.pathsep.join(
        [str(ROOT), str(package), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "jobs.sweep", "cluster.num_cpus=1", "report.images=0", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def trained(package, tmp_path_factory) -> Path:
    """The user's Net beside softmax in one sweep (1 epoch on 600 digits; transfer and evaluation off)."""
    sweep_dir = tmp_path_factory.mktemp("mine") / "mine"
    done = sweep([f"dir={sweep_dir}", "sweep.name=mine", "sweep.grid.model._target_=pipeline.models.Softmax,mynet.Net",
                  "sweep.grid.regularizer=none", "sweep.overrides=['trainer.max_epochs=1','data.limit=600']",
                  "transfer.enabled=false", "evaluation.enabled=false"], package)
    assert done.returncode == 0, done.stderr[-3000:]
    return sweep_dir


def job_dirs(sweep_dir: Path) -> dict[str, Path]:
    """Each job's directory by its model class."""
    dirs = {}
    for metrics in sweep_dir.glob("jobs/*/metrics.json"):
        config = (metrics.parent / "config.yaml").read_text()
        dirs["mynet.Net" if "mynet.Net" in config else "softmax"] = metrics.parent
    return dirs


@pytest.mark.slow
def test_a_plain_module_from_outside_trains_in_a_sweep_and_loads_back(trained):
    dirs = job_dirs(trained)
    assert set(dirs) == {"mynet.Net", "softmax"}
    model = load_model(dirs["mynet.Net"])
    assert type(model).__module__ == "mynet" and type(model).__name__ == "Net" and not model.training
    metrics = json.loads((dirs["mynet.Net"] / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["clean_error"] < 0.8      # better than chance (90%) after one epoch
    from pipeline.data import test_set
    from pipeline.attacks import clean_scores

    x, y = test_set(compose("data.limit=600"))
    assert clean_scores(model, x, y, 1000)[0] == pytest.approx(metrics["clean_error"])   # the same weights


def pretrained_job(tmp_path: Path, monkeypatch, *overrides: str) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """Run one model=pretrained job in this process, with Lightning's fit made to fail if anything trains."""
    import pytorch_lightning as pl

    from pipeline.data import test_set
    from pipeline.training.job import run_job

    monkeypatch.setattr(pl.Trainer, "fit", lambda *a, **k: pytest.fail("a pretrained model was trained"))
    cfg = compose("model=pretrained", "logger=none", "data.limit=600", *overrides)
    metrics = run_job(cfg, tmp_path / "job")
    return metrics, *test_set(cfg)


def numbers(curve: list[dict]) -> list[float]:
    """ε, error and mean confidence of every row of a curve, in one flat list (for pytest.approx)."""
    return [row[key] for row in curve for key in ("eps", "error", "confidence")]


def reference_curve(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """The FGSM curve of attacking the module directly, as the job's attack config does."""
    from pipeline.attacks import FGSM

    epsilons = list(compose().eval.epsilons)
    return numbers(FGSM().curve(model.eval(), x, y, epsilons, batch_size=1000).rows())


@pytest.mark.slow
def test_torchscript_and_state_dict_files_are_evaluated_without_training(package, trained, tmp_path, monkeypatch):
    net = load_model(job_dirs(trained)["mynet.Net"])
    scripted, weights = tmp_path / "net.ts", tmp_path / "net_weights.pt"
    torch.jit.save(torch.jit.script(net), str(scripted))
    torch.save(net.state_dict(), weights)
    ts_metrics, x, y = pretrained_job(tmp_path / "ts", monkeypatch, f"model.path={scripted}")
    sd_metrics, _, _ = pretrained_job(tmp_path / "sd", monkeypatch, f"model.path={weights}",
                                      "+model.architecture._target_=mynet.Net", "+model.architecture.hidden=16")
    expected = reference_curve(net, x, y)
    for metrics in (ts_metrics, sd_metrics):
        assert metrics["epochs"] == 0 and numbers(metrics["curve"]) == pytest.approx(expected, abs=1e-6)
    assert ts_metrics["pretrained"]["sha256"] != sd_metrics["pretrained"]["sha256"]
    # the job directory stands alone: its copy of the file rebuilds the model
    for job in ("ts", "sd"):
        again = load_model(tmp_path / job / "job")
        assert reference_curve(again, x, y) == pytest.approx(expected, abs=1e-6)


def test_the_id_follows_the_file_not_its_path(package, tmp_path):
    from pipeline.stages.plan import plan

    from omegaconf import OmegaConf
    from pipeline.config import hydra_context

    def ids(path: Path) -> list[str]:
        with hydra_context():
            return [job.id for job in plan(OmegaConf.create(
                {"grid": {"seed": "0"}, "overrides": ["model=pretrained", f"model.path={path}"]}))]

    first = tmp_path / "a" / "net.pt"
    first.parent.mkdir()
    torch.jit.save(torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))), str(first))
    before = ids(first)
    moved = tmp_path / "b.pt"
    first.rename(moved)
    assert ids(moved) == before                                     # moved: the same job
    torch.jit.save(torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))), str(moved))
    assert ids(moved) != before                                     # changed: a new job


class RunsCode:
    """Unpickling this runs a shell command (what a malicious checkpoint does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_that_carries_code_is_refused_without_running(package, tmp_path):
    from pipeline.pretrained import load

    marker, evil = tmp_path / "ran", tmp_path / "weights.pt"
    torch.save({"body.1.weight": RunsCode(marker)}, evil)
    with pytest.raises(ConfigError, match=rf"^model.path={evil} is refused: a pickle that carries code "
                                          r"\(it calls posix.system\)"):
        load(str(evil), {"_target_": "mynet.Net"}, [1, 28, 28], 10)
    assert not marker.exists()


@pytest.mark.parametrize("target, extra, message", [
    ("mynet.Probabilities", [], r"model mynet.Probabilities returns probabilities \(rows in \[0, 1\] summing to 1\), "
                                r"expected logits"),
    ("mynet.WrongShape", [], r"model mynet.WrongShape returns \[8, 3\] for inputs of shape \[8, 1, 28, 28\]; "
                             r"expected \[N, classes\] = \[8, 10\] logits"),
    ("mynet.Noisy", [], r"model mynet.Noisy gives different outputs for the same input in eval mode .*\(EOT\).* "
                        r"set model.stochastic=true"),
    ("mynet.ColourOnly", [], r"model mynet.ColourOnly rejects inputs of shape \[8, 1, 28, 28\] \(the data's images "
                             r"are \[1, 28, 28\]"),
    ("mynet.Broken", ["+model.hidden=32"], r"cannot build model: Error in call to target 'mynet.Broken': "
                                           r"ValueError: hidden=32 is not a power of 4$"),
])
def test_contract_checks_name_the_model_and_what_was_expected(package, target, extra, message):
    from pipeline.training.job import build

    with pytest.raises(ConfigError, match=message):
        build(compose(f"model._target_={target}", "data.limit=200", *extra))


def test_a_stochastic_model_is_evaluated_when_declared(package):
    from pipeline.training.job import build

    _, model, _, _ = build(compose("model._target_=mynet.Noisy", "+model.stochastic=true", "data.limit=200"))
    assert type(model).__name__ == "Noisy"


@pytest.fixture(scope="module")
def zoo(package, trained, tmp_path_factory) -> Path:
    """Three models trained elsewhere: a TorchScript file and two Harness job directories."""
    folder = tmp_path_factory.mktemp("zoo")
    dirs = job_dirs(trained)
    torch.jit.save(torch.jit.script(load_model(dirs["mynet.Net"])), str(folder / "net.ts"))
    sweep_dir = folder / "sweep"
    models = f"{{scripted: {folder / 'net.ts'}, mine: {dirs['mynet.Net']}, soft: {dirs['softmax']}}}"
    done = sweep(["experiment=zoo", f"zoo.models={models}", "sweep.overrides=['model=pretrained','data.limit=600']",
                  f"dir={sweep_dir}",
                  "evaluation.rubbish=0", "evaluation.attacks.apgd.steps=10"], package)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "trained 0, evaluated 3 (trained elsewhere), reused 0, failed 0" in done.stderr
    return sweep_dir


@pytest.mark.slow
def test_a_zoo_sweep_compares_its_models(zoo):
    transfer = pd.read_csv(zoo / "transfer_settings.csv")
    at = transfer[transfer["eps"] == transfer["eps"].max()]
    assert sorted(zip(at["source"], at["target"])) == sorted((s, t) for s in ("mine", "scripted", "soft")
                                                             for t in ("mine", "scripted", "soft"))
    # the scripted copy of `mine` is the same function: the same white-box error, and each fools the other alike
    cell = {(r.source, r.target): r.error for r in at.itertuples()}
    assert cell[("mine", "mine")] == pytest.approx(cell[("scripted", "scripted")])
    assert cell[("mine", "scripted")] == pytest.approx(cell[("mine", "mine")])
    assert set(pd.read_csv(zoo / "evaluations.csv")["evaluation"]) >= {"fgsm", "pgd", "strongest"}
    report = (zoo / "report.md").read_text()
    sections = [line for line in report.splitlines() if line.startswith("## ")]
    assert sections[0] == "## Models side by side"
    assert "Paper vs this run" not in report and "NOT RUN" not in report
    side_by_side = report.split("## Models side by side")[1].split("## ")[0]
    assert all(f"| {name} " in side_by_side for name in ("mine", "scripted", "soft"))
    for metrics in zoo.glob("jobs/*/metrics.json"):
        assert json.loads(metrics.read_text())["epochs"] == 0


def test_a_user_class_on_top_of_model_softmax_is_not_the_papers_softmax(package):
    from omegaconf import OmegaConf

    from pipeline.paper import claims

    assert claims.SOFTMAX.matches(OmegaConf.to_container(compose(), resolve=True))
    assert not claims.SOFTMAX.matches(OmegaConf.to_container(compose("model._target_=mynet.Net"), resolve=True))
