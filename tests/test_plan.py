"""Planning a sweep: Hydra's grid expansion, composition, job ids, experiments."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from pipeline.config import CONF_DIR, group_options
from pipeline.errors import ConfigError
from pipeline.stages.plan import conditional_overrides, grid_overrides, job_id, plan

ROOT = Path(__file__).resolve().parent.parent


def sweep_config(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("sweep", overrides=list(overrides))
        return cfg, plan(cfg.sweep, group=cfg.sweep.name)


def test_grid_expansion_matches_hydra_multirun(tmp_path):
    """The jobs a sweep plans are the jobs `jobs.train -m` runs for the same overrides, in the same order."""
    grid = {"regularizer": "none,l1", "seed": "range(2)"}
    sweep_dir = tmp_path / "multirun"
    subprocess.run([sys.executable, "-m", "jobs.train", "-m", *(f"{k}={v}" for k, v in grid.items()),
                    "trainer.max_epochs=0", "logger=none", "data.limit=100", f"hydra.sweep.dir={sweep_dir}"],
                   cwd=ROOT, check=True, capture_output=True)
    ran = []
    for number in range(len(list(sweep_dir.glob("[0-9]*")))):
        cfg = OmegaConf.load(sweep_dir / str(number) / "config.yaml")
        ran.append((cfg.choices.regularizer, cfg.seed))
    planned = [(p[0].split("=")[1], int(p[1].split("=")[1])) for p in grid_overrides(grid)]
    assert ran == planned
    assert len(planned) == 4


def test_grid_accepts_lists_choice_and_range():
    assert grid_overrides({"model": ["softmax", "maxout"]}) == [["model=softmax"], ["model=maxout"]]
    assert grid_overrides({"seed": "choice(3,5)"}) == [["seed=3"], ["seed=5"]]
    assert [p[0] for p in grid_overrides({"seed": "range(1,4)"})] == ["seed=1", "seed=2", "seed=3"]


@pytest.mark.parametrize("grid", [{}, {"model": ""}, {"model": []}, {"model": "range(0)"}])
def test_empty_grid_is_a_clear_error(grid):
    with pytest.raises(ConfigError, match="sweep.grid"):
        grid_overrides(grid)


def test_invalid_grid_is_a_clear_error():
    with pytest.raises(ConfigError, match="invalid sweep.grid"):
        grid_overrides({"model": "softmax,,("})


def test_unknown_option_in_grid_is_a_clear_error():
    with pytest.raises(ConfigError, match="nosuch"):
        sweep_config("sweep.grid.model='softmax,nosuch'")


def test_grid_axes_on_the_command_line_need_no_quotes(tmp_path):
    """`jobs.sweep sweep.grid.model=a,b sweep.grid.seed=range(2)` plans a grid (Hydra alone would refuse it)."""
    result = subprocess.run([sys.executable, "-m", "jobs.sweep", "sweep.grid.model=softmax,logistic",
                             "sweep.grid.seed=range(2)", f"dir={tmp_path}", "--cfg", "job"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    grid = OmegaConf.create(result.stdout).sweep.grid
    assert grid.model == "softmax,logistic" and grid.seed == "range(2)"


def test_plan_composes_resolves_and_names_jobs():
    cfg, jobs = sweep_config()
    assert len(jobs) == 6
    assert len({j.id for j in jobs}) == 6
    for job in jobs:
        assert job.config["job_id"] == job.id
        assert job.config["logger"]["group"] == cfg.sweep.name
        assert "${" not in str(job.config)          # resolved on the driver
        assert job.config["choices"]["model"] in ("softmax", "maxout", "rbf")
    rbf = [j for j in jobs if j.config["choices"]["model"] == "rbf"]
    assert all(j.config["optimizer"]["_target_"] == "torch.optim.Adam" for j in rbf)   # sweep.when applied
    assert all(j.config["trainer"]["max_epochs"] == 15 for j in jobs)                  # sweep.overrides applied


def test_job_id_is_stable_and_ignores_what_does_not_change_results():
    _, jobs = sweep_config()
    _, renamed = sweep_config("sweep.name=other")
    assert [j.id for j in jobs] == [j.id for j in renamed]
    _, reseeded = sweep_config("+sweep.grid.seed=1")
    assert not {j.id for j in jobs} & {j.id for j in reseeded}
    config = dict(jobs[0].config)
    assert job_id(config) == job_id({**config, "logger": {"mode": "disabled"}})
    assert job_id(config) != job_id({**config, "seed": config["seed"] + 1})


def test_conditional_overrides_apply_to_matching_points_only():
    when = {"model=rbf": ["optimizer=adam"]}
    assert conditional_overrides(["model=rbf", "seed=0"], when) == ["optimizer=adam"]
    assert conditional_overrides(["model=softmax"], when) == []


@pytest.mark.parametrize("experiment", group_options("experiment"))
def test_every_experiment_plans(experiment):
    """Fails for an experiment whose grid or overrides do not compose (every experiment has this test)."""
    cfg, jobs = sweep_config(f"experiment={experiment}")
    assert jobs and cfg.sweep.name
    assert len({j.id for j in jobs}) == len(jobs)
