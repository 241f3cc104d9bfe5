"""One training job end to end (pipeline.training.job.run_job): the paper's softmax result on the embedded digits,
the job directory's contract, reproducibility, and what W&B receives."""
from __future__ import annotations

import json
import math

import pytest
import torch
from omegaconf import OmegaConf, open_dict

from tests.support.configs import compose
from pipeline import load_model, store
from pipeline.config import instantiate
from pipeline.training.job import run_job
from tests.support.wandb_records import history, read_run, run_file

pytestmark = pytest.mark.slow

EPSILONS = [0.0, 0.1, 0.25]


@pytest.fixture(scope="module")
def softmax_job(tmp_path_factory):
    """The default job (softmax regression on mnist5k, SGD) for a few epochs, without W&B."""
    job_dir = tmp_path_factory.mktemp("softmax") / "job"
    cfg = compose("logger=none", "trainer.max_epochs=5", f"eval.epsilons={EPSILONS}")
    metrics = run_job(cfg, job_dir)
    return cfg, job_dir, metrics


def test_softmax_learns_and_fgsm_fools_it(softmax_job):
    """The paper's shallow softmax: FGSM at ε = 0.25 fools it almost always (paper: 99.9%)."""
    _, _, metrics = softmax_job
    errors = {row["eps"]: row["error"] for row in metrics["curve"]}
    assert metrics["clean_error"] < 0.15
    assert errors[0.25] > 0.9
    assert errors[0.0] == pytest.approx(metrics["clean_error"])
    assert errors[0.0] < errors[0.1] < errors[0.25]


def test_metrics_follow_the_documented_schema(softmax_job):
    cfg, job_dir, metrics = softmax_job
    on_disk = json.loads((job_dir / store.METRICS).read_text())
    assert on_disk["schema"] == store.SCHEMA == 1 and on_disk["status"] == "complete"
    for key in ("job_id", "seed", "clean_error", "clean_confidence", "train_error", "val_error", "attack", "curve",
                "epochs", "train_seconds", "node", "checkpoint", "versions"):
        assert key in on_disk, key
    assert on_disk["job_id"] == "job" and on_disk["seed"] == cfg.seed == 0
    assert on_disk["attack"] == {"name": "fgsm", "clip": [0.0, 1.0], "craft_with": "true"}
    assert [row["eps"] for row in on_disk["curve"]] == EPSILONS
    for row in on_disk["curve"]:
        assert set(row) == {"eps", "error", "confidence", "confidence_wrong"}
        assert 0 <= row["error"] <= 1 and 0 < row["confidence"] <= 1 and 0 < row["confidence_wrong"] <= 1
    for key in ("clean_error", "clean_confidence", "train_error", "val_error", "train_seconds"):
        assert isinstance(on_disk[key], float) and math.isfinite(on_disk[key]), key
    assert on_disk["train_error"] < on_disk["clean_error"] + 0.05
    assert on_disk["epochs"] == 5
    assert on_disk["checkpoint"] == {"file": store.CHECKPOINT, "sha256": store.sha256(job_dir / store.CHECKPOINT)}
    assert {"python", "torch", "pytorch_lightning", "hydra", "wandb"} <= set(on_disk["versions"])
    assert store.read_metrics(job_dir) == on_disk and store.is_complete(job_dir)
    assert not (job_dir / store.FAILURE).exists()
    assert OmegaConf.load(job_dir / store.CONFIG).model._target_ == "pipeline.models.Softmax"


def test_load_model_reproduces_the_clean_error(softmax_job):
    cfg, job_dir, metrics = softmax_job
    model = load_model(job_dir)
    assert not model.training and all(not m.training for m in model.modules())
    data = instantiate(OmegaConf.load(job_dir / store.CONFIG).data, "data")
    data.setup()
    x, y = data.splits["test"]
    with torch.no_grad():
        wrong = int((model(x).argmax(dim=1) != y).sum())
    assert wrong == round(metrics["clean_error"] * len(y))
    assert 0 < wrong < len(y)


def test_checkpoint_loads_with_weights_only(softmax_job):
    _, job_dir, _ = softmax_job
    state = torch.load(job_dir / store.CHECKPOINT, weights_only=True)
    assert state["model_config"]["_target_"] == "pipeline.models.Softmax"
    assert state["model"]["linear.weight"].shape == (10, 784)


def test_same_config_and_seed_give_the_same_results(tmp_path):
    """Dropout, shuffling and initialization all follow the seed: two runs agree to the last bit."""
    overrides = ["logger=none", "trainer.max_epochs=2", "data.limit=400", "model=maxout", "model.units=32",
                 "regularizer=adversarial", f"eval.epsilons={EPSILONS}"]
    first = run_job(compose(*overrides), tmp_path / "first")
    second = run_job(compose(*overrides), tmp_path / "second")
    assert first["curve"] == second["curve"]
    assert first["clean_error"] == second["clean_error"] and first["train_error"] == second["train_error"]
    weights = {name: torch.load(tmp_path / name / store.CHECKPOINT, weights_only=True)["model"]
               for name in ("first", "second")}
    assert weights["first"].keys() == weights["second"].keys()
    assert all(torch.equal(weights["first"][k], weights["second"][k]) for k in weights["first"])
    run_job(compose(*overrides, "seed=1"), tmp_path / "other")
    other_weights = torch.load(tmp_path / "other" / store.CHECKPOINT, weights_only=True)["model"]
    assert not torch.equal(other_weights["net.2.linear.weight"], weights["first"]["net.2.linear.weight"])


def test_early_stopping_on_the_fgsm_validation_error_keeps_the_best_epoch(tmp_path):
    """The paper's early stopping: validation FGSM error every epoch, stop `patience` epochs after the best one,
    and the job's model (checkpoint and curve) is the best epoch's."""
    patience, max_epochs = 2, 12
    cfg = compose("logger=none", f"trainer.max_epochs={max_epochs}", "data.limit=300", "model=maxout", "model.units=16",
                  "model.pieces=2", "optimizer.lr=0.5", f"eval.epsilons={EPSILONS}",
                  f"early_stopping={{monitor: val/fgsm_error, eps: 0.25, patience: {patience}}}")
    metrics = run_job(cfg, tmp_path / "job")
    stopping = metrics["early_stopping"]
    history, best = stopping["history"], stopping["best_epoch"]
    assert best == history.index(min(history))
    assert len(history) == min(max_epochs, best + patience + 1)   # ran exactly `patience` epochs past the best
    model = load_model(tmp_path / "job")
    data = instantiate(cfg.data, "data", seed=cfg.seed)
    data.setup()
    val_error = instantiate(cfg.attack, "attack").curve(model, *data.splits["val"], [0.25]).error[0]
    assert float(val_error) == pytest.approx(history[best], abs=1e-6)


def test_run_job_accepts_a_config_without_choices(tmp_path):
    cfg = compose("logger=none", "trainer.max_epochs=3", "data.limit=300", "eval.epsilons=[0.1]")
    with open_dict(cfg):
        cfg.choices = {}                                           # as conf/config.yaml has it
    assert run_job(cfg, tmp_path / "job")["clean_error"] < 0.5     # it learned: chance is 0.9 for ten digits


def test_wandb_offline_run_records_history_and_the_curve_table(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_DIR", raising=False)
    job_dir = tmp_path / "job"
    cfg = compose("logger=wandb", "trainer.max_epochs=3", "data.limit=300", f"eval.epsilons={EPSILONS}")
    metrics = run_job(cfg, job_dir, run_name="softmax-test")

    path = run_file(job_dir)                                       # the run lives under job_dir/wandb
    rows = history(path)
    train = [row for row in rows if "train/loss" in row]
    val = [row for row in rows if "val/error" in row]
    assert [row["epoch"] for row in train] == [0, 1, 2]
    assert [row["epoch"] for row in val] == [0, 1, 2]
    assert all(math.isfinite(row["train/loss"]) for row in train)
    assert train[-1]["train/loss"] < train[0]["train/loss"]        # it learned
    assert val[-1]["val/error"] == pytest.approx(metrics["val_error"], abs=1e-6)

    run = read_run(path.parent)
    assert run.id == "job-1" and run.job_type == "train"   # the job id and the attempt number
    table = run.table("eval/curve")
    assert table["columns"] == ["eps", "error", "confidence", "confidence_wrong"]
    assert table["data"] == [[row[c] for c in table["columns"]] for row in metrics["curve"]]
    assert list((path.parent / "files" / "media" / "table").rglob("*.table.json"))
