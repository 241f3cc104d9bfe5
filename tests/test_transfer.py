"""The transfer stage at scale: seed-matched pairs (linear in seeds) or all pairs, setting filters, one load per
model and task, parts reused until their inputs change, and the per-setting table with its interval. The evaluation
stage's parts are reused the same way.

Jobs are real job directories made by `run_job` with zero training epochs (initialised models, real digits), and
the stage runs in this process (no Ray: the task runner runs the tasks one after another).
"""
from __future__ import annotations

import json

import pandas as pd
import pytest
from hydra import compose
from omegaconf import OmegaConf, open_dict

from pipeline import store
from pipeline.config import hydra_context
from pipeline.errors import ConfigError
from pipeline.training.job import run_job
from pipeline.stages.evaluate import evaluation_stage
from pipeline.stages.plan import plan
from pipeline.stages.sweep_dir import PARTS, TRANSFER_META, TRANSFER_SETTINGS, job_dir, read_table
from pipeline.stages.transfer import transfer_stage

pytestmark = pytest.mark.slow

SEEDS = 3
OVERRIDES = ["logger=none", "trainer.max_epochs=0", "data.limit=100", "eval.epsilons=[0.25]"]


def sweep_config(*extra: str):
    with hydra_context():
        cfg = compose("sweep", overrides=["sweep.name=transfer", "transfer.epsilons=[0.0,0.25]", *extra])
        with open_dict(cfg):
            cfg.sweep.grid = {"model": "softmax,maxout", "seed": f"range({SEEDS})"}
            cfg.sweep.overrides = OVERRIDES
            cfg.sweep.when = {"model=maxout": ["model.units=8", "model.pieces=2"]}
        return cfg, plan(cfg.sweep, group="transfer")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """2 settings × 3 seeds of complete jobs in one sweep directory."""
    sweep_dir = tmp_path_factory.mktemp("transfer")
    cfg, jobs = sweep_config()
    for job in jobs:
        run_job(OmegaConf.create(job.config), job_dir(sweep_dir, job))
    return sweep_dir, jobs


def run(sweep_dir, *extra: str, force: bool = False) -> tuple[pd.DataFrame, dict]:
    cfg, jobs = sweep_config(*extra)
    table, failed = transfer_stage(cfg, sweep_dir, jobs, force=force)
    assert failed == {}
    return table, store.read_json(sweep_dir / TRANSFER_META)


def test_seed_matched_pairs_grow_linearly_with_seeds_and_load_each_model_once(sweep):
    sweep_dir, jobs = sweep
    table, meta = run(sweep_dir, force=True)
    seed = {job.id: job.config["seed"] for job in jobs}
    assert len(table) == SEEDS * 2 * 2 * 2                       # per seed: 2 sources × 2 targets × 2 ε
    assert all(seed[s] == seed[t] for s, t in zip(table["source"], table["target"]))
    assert meta["tasks"] == meta["computed"] == SEEDS and meta["models_loaded"] == [2] * SEEDS
    assert meta["input_gradients"] == 2 * SEEDS                  # one per source (the test set fits one batch)


def test_all_pairs_is_every_pair_of_jobs(sweep):
    sweep_dir, jobs = sweep
    table, meta = run(sweep_dir, "transfer.pairs=all")
    assert len(table) == (2 * SEEDS) ** 2 * 2
    assert meta["tasks"] == 2 * SEEDS and meta["models_loaded"] == [2 * SEEDS] * (2 * SEEDS)


def test_sources_and_targets_keep_only_the_named_settings(sweep):
    sweep_dir, jobs = sweep
    setting = {job.id: job.setting for job in jobs}
    table, _ = run(sweep_dir, "transfer.sources=[maxout]", "transfer.targets=[softmax]")
    assert {setting[s] for s in table["source"]} == {"maxout"}
    assert {setting[t] for t in table["target"]} == {"softmax"}
    assert len(table) == SEEDS * 2


def test_a_setting_name_that_matches_nothing_is_refused(sweep):
    with pytest.raises(ConfigError, match="transfer.targets: 'rbf' matches no setting"):
        run(sweep[0], "transfer.targets=[rbf]")


def test_parts_are_reused_until_a_checkpoint_or_the_code_changes(sweep, monkeypatch):
    sweep_dir, jobs = sweep
    before, _ = run(sweep_dir, force=True)
    again, meta = run(sweep_dir)
    assert meta["computed"] == 0 and meta["reused"] == SEEDS
    pd.testing.assert_frame_equal(before, again)
    # retrain one job (here: one more epoch): only its seed's part is computed again
    job = jobs[0]
    config = json.loads(json.dumps(job.config))
    config["trainer"]["max_epochs"] = 1
    run_job(OmegaConf.create(config), job_dir(sweep_dir, job))
    _, meta = run(sweep_dir)
    assert meta["computed"] == 1 and meta["reused"] == SEEDS - 1
    # the transfer stage's own code changed: every part is computed again
    monkeypatch.setattr("pipeline.stages.transfer.fingerprint", lambda sources: "other code")
    _, meta = run(sweep_dir)
    assert meta["computed"] == SEEDS


def test_per_setting_table_averages_seeds_with_an_interval(sweep):
    sweep_dir, jobs = sweep
    table, _ = run(sweep_dir)
    settings = read_table(sweep_dir / TRANSFER_SETTINGS)
    assert len(settings) == 2 * 2 * 2 and (settings["seeds"] == SEEDS).all()
    setting = {job.id: job.setting for job in jobs}
    rows = table[(table["source"].map(setting) == "maxout") & (table["target"].map(setting) == "softmax")
                 & (table["eps"] == 0.25)]
    cell = settings[(settings["source"] == "maxout") & (settings["target"] == "softmax") & (settings["eps"] == 0.25)]
    assert cell["error"].item() == pytest.approx(rows["error"].mean())
    assert cell["error_half"].item() > 0 or rows["error"].nunique() == 1


def evaluation_parts(sweep_dir, *extra: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """The evaluation stage with one cheap attack on the last seed's two jobs; returns its table and each part
    file's inode and mtime."""
    cfg, jobs = sweep_config("evaluation.rubbish=100", *extra)
    with open_dict(cfg):
        cfg.evaluation.attacks = {"fgsm": {"_target_": "pipeline.attacks.FGSM", "craft_with": "true"}}
    table, failed = evaluation_stage(cfg, sweep_dir, evaluated(jobs))
    assert failed == {}
    files = sorted((sweep_dir / PARTS / "evaluation").glob("*.csv"))
    return table, {path.stem: (path.stat().st_ino, path.stat().st_mtime_ns) for path in files}


def evaluated(jobs: list) -> list:
    return [job for job in jobs if job.config["seed"] == SEEDS - 1]


def test_evaluation_parts_are_reused_until_a_checkpoint_a_setting_or_the_code_changes(sweep, monkeypatch):
    sweep_dir, jobs = sweep[0], evaluated(sweep[1])
    assert len(jobs) == 2
    first, parts = evaluation_parts(sweep_dir)
    assert len(parts) == len(jobs) and set(first["job_id"]) == {job.id for job in jobs}
    again, reused = evaluation_parts(sweep_dir)
    assert reused == parts                                      # no part written again
    pd.testing.assert_frame_equal(first, again)
    # one job trained again (one more epoch): its part alone is computed again, from its new checkpoint
    job = jobs[-1]
    config = json.loads(json.dumps(job.config))
    config["trainer"]["max_epochs"] = 1
    retrained = run_job(OmegaConf.create(config), job_dir(sweep_dir, job))
    table, after = evaluation_parts(sweep_dir)
    assert len(after) == len(parts) and len(set(after) - set(parts)) == 1
    assert {key: after[key] for key in set(after) & set(parts)} == {key: parts[key] for key in set(after) & set(parts)}
    rows = table[table["job_id"] == job.id]
    assert rows["clean_error"].eq(retrained["clean_error"]).all()             # not the stale part's numbers
    assert not rows["clean_error"].eq(first.loc[first["job_id"] == job.id, "clean_error"].iloc[0]).all()
    # a setting of the stage changed: every part again
    _, changed = evaluation_parts(sweep_dir, "evaluation.epsilons=[0.1]")
    assert not set(changed) & set(after)
    # the stage's own code changed: every part again
    monkeypatch.setattr("pipeline.stages.evaluate.fingerprint", lambda sources: "other code")
    _, recoded = evaluation_parts(sweep_dir, "evaluation.epsilons=[0.1]")
    assert len(recoded) == len(jobs) and not set(recoded) & set(changed)
