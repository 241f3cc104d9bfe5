"""Planning a sweep: Hydra's grid expansion, composition, job ids, experiments."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from pipeline.config import CONF_DIR, compose_job, group_options, hydra_context
from pipeline.errors import ConfigError
from pipeline.stages.composer import Composer
from pipeline.stages.plan import conditional_overrides, grid_overrides, job_id, located, plan

ROOT = Path(__file__).resolve().parent.parent


def sweep_config(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("sweep", overrides=list(overrides))
        return cfg, plan(cfg.sweep, group=cfg.sweep.name)


@pytest.mark.slow
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


@pytest.mark.slow
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
        assert job.config["logger"]["wandb"]["group"] == cfg.sweep.name
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
    # callbacks enter the id only when there are some: ids from before the group existed stay
    assert config["callbacks"] == {} and job_id(config) == job_id({k: v for k, v in config.items() if k != "callbacks"})
    swa = {"swa": {"_target_": "pytorch_lightning.callbacks.StochasticWeightAveraging", "swa_lrs": 0.01}}
    assert job_id(config) != job_id({**config, "callbacks": swa})


def test_conditional_overrides_apply_to_matching_points_only():
    when = {"model=rbf": ["optimizer=adam"]}
    assert conditional_overrides(["model=rbf", "seed=0"], when) == ["optimizer=adam"]
    assert conditional_overrides(["model=softmax"], when) == []


@pytest.mark.parametrize("experiment", group_options("experiment"))
def test_every_experiment_plans(experiment, tmp_path):
    """Fails for an experiment whose grid or overrides do not compose (every experiment has this test)."""
    extra = []
    if experiment == "zoo":   # models trained elsewhere: two files (their contents name the jobs)
        for name in ("a", "b"):
            (tmp_path / f"{name}.pt").write_bytes(name.encode())
        extra = [f"zoo.models={{a: {tmp_path / 'a.pt'}, b: {tmp_path / 'b.pt'}}}"]
    cfg, jobs = sweep_config(f"experiment={experiment}", *extra)
    assert jobs and cfg.sweep.name
    assert len({j.id for j in jobs}) == len(jobs)


# The main experiment's job ids: they hash the resolved config only, so they must not change when code moves.
MAIN_IDS = ["a6ebc662e5d2", "3dade433143e", "238eefff6349", "e314c4176b88", "f662fed5bf7f", "a0fd88103dea"]


def composed_one_by_one(cfg) -> list[dict]:
    """The reference: Hydra composes every job on its own (what planning did before it composed per combination)."""
    sweep = cfg.sweep
    when = OmegaConf.to_container(sweep.when)
    configs = []
    for point in grid_overrides(OmegaConf.to_container(sweep.grid, resolve=True)):
        job = compose_job(list(sweep.overrides) + conditional_overrides(point, when) + point)
        if "wandb" in job.logger:
            job.logger.wandb.group = sweep.name
        configs.append(located(OmegaConf.to_container(job, resolve=True)))   # data paths made absolute, as planned
    return configs


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["main", "goodfellow2015_cpu", "goodfellow2015", "smoke"])
def test_composing_once_per_combination_gives_what_hydra_gives_for_each_job(experiment):
    with hydra_context():
        cfg = compose("sweep", overrides=[f"experiment={experiment}"])
        jobs = plan(cfg.sweep, group=cfg.sweep.name)
        reference = composed_one_by_one(cfg)
    assert len(jobs) == len(reference)
    for job, config in zip(jobs, reference):
        assert job.id == job_id(config)
        assert json.dumps(job.config) == json.dumps({**config, "job_id": job.id})   # same keys, order, values


def test_main_job_ids_are_stable():
    assert [j.id for j in sweep_config()[1]] == MAIN_IDS


def test_planning_composes_once_per_combination_of_group_choices_whatever_the_seeds():
    counts = []
    for seeds in (2, 20):
        with hydra_context():
            cfg = compose("sweep", overrides=[f"+sweep.grid.seed='range({seeds})'"])
            composer = Composer()
            jobs = plan(cfg.sweep, composer=composer)
        assert len(jobs) == 6 * seeds
        counts.append(composer.composed)
    assert counts[0] == counts[1] == 2 * 6    # each of the 6 combinations: its base, and its first job to check


def test_jobs_share_the_parts_of_the_config_that_their_overrides_leave_alone():
    with hydra_context():
        cfg = compose("sweep", overrides=["+sweep.grid.seed='range(3)'"])
        jobs = plan(cfg.sweep)
    chosen = {j.id: (j.config["choices"]["model"], j.config["choices"]["regularizer"]) for j in jobs}
    maxout = [j for j in jobs if chosen[j.id] == ("maxout", "none")]
    assert [j.config["seed"] for j in maxout] == [0, 1, 2]
    assert maxout[0].config["model"] is maxout[1].config["model"] is maxout[2].config["model"]


@pytest.mark.parametrize("override, message", [
    ("sweep.grid.model=[]", "chooses no model"),
    ("sweep.grid.nosuchkey=1,2", "nosuchkey is not a key of the job config"),
    ("sweep.grid.model=softmax,nosuch", "unknown model 'nosuch'"),
])
def test_bad_grids_are_refused_while_planning(override, message):
    key, value = override.split("=", 1)
    with pytest.raises(ConfigError, match=message):
        sweep_config(f"++{key}='{value}'")


@pytest.mark.slow
def test_planning_imports_no_torch_pandas_matplotlib_or_ray(tmp_path):
    """`plan_only` (and a SLURM array task's plan) in a fresh interpreter, on a user's .npz and a model file: the
    driver plans without the libraries that only the stages need."""
    import numpy as np

    np.savez(tmp_path / "digits.npz", x_train=np.zeros((20, 8, 8), np.uint8), y_train=np.arange(20) % 2,
             x_test=np.zeros((4, 8, 8), np.uint8), y_test=np.arange(4) % 2)
    (tmp_path / "a.pt").write_bytes(b"weights")
    script = f"""
import runpy, sys
sys.argv = ["jobs.sweep", "plan_only=true", "dir={tmp_path / 'sweep'}", "experiment=zoo",
            "zoo.models={{a: {tmp_path / 'a.pt'}}}",
            "sweep.overrides=['model=pretrained','data=arrays','data.path={tmp_path / 'digits.npz'}']"]
try:
    runpy.run_module("jobs.sweep", run_name="__main__")
except SystemExit as done:
    assert not done.code, done.code
heavy = ("torch", "pandas", "matplotlib", "ray", "pytorch_lightning", "numpy")
print("LOADED", sorted(m for m in heavy if m in sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0 and "1 jobs planned" in done.stderr, done.stderr[-2000:]
    assert done.stdout.splitlines()[-1] == "LOADED []"


def zoo_files(tmp_path: Path) -> tuple[Path, Path]:
    """Two model files (their bytes name the jobs) and a user's .npz of 8×8 images."""
    import numpy as np

    (tmp_path / "a.pt").write_bytes(b"a")
    (tmp_path / "b.pt").write_bytes(b"b")
    np.savez(tmp_path / "d.npz", x_train=np.zeros((20, 8, 8), np.uint8), y_train=np.arange(20) % 2,
             x_test=np.zeros((4, 8, 8), np.uint8), y_test=np.arange(4) % 2)
    return tmp_path / "a.pt", tmp_path / "b.pt"


def test_a_zoo_member_brings_its_own_class_and_no_other_member_gets_it(tmp_path):
    a, b = zoo_files(tmp_path)
    member = f"{{path: {b}, architecture: {{_target_: torch.nn.Linear, in_features: 64, out_features: 2}}}}"
    _, jobs = sweep_config("experiment=zoo", f"zoo.models={{a: {a}, b: {member}}}")
    models = {job.config["model"]["name"]: job.config["model"] for job in jobs}
    assert models["a"]["path"] == str(a) and models["a"]["architecture"] is None
    assert models["b"]["path"] == str(b)
    assert models["b"]["architecture"] == {"_target_": "torch.nn.Linear", "in_features": 64, "out_features": 2}


def test_a_zoo_member_that_is_neither_a_file_nor_an_entry_is_one_line(tmp_path):
    a, _ = zoo_files(tmp_path)
    with pytest.raises(ConfigError, match=r"zoo.models.a=\{'file': .*give a file, or \{path: <file>, architecture"):
        sweep_config("experiment=zoo", f"zoo.models={{a: {{file: {a}}}}}")


def test_data_options_on_the_sweeps_command_line_reach_every_job_after_the_experiments(tmp_path):
    from pipeline.stages.sweep import with_job_data

    a, b = zoo_files(tmp_path)
    given = ["experiment=zoo", f"zoo.models={{a: {a}, b: {b}}}", "data=arrays", f"data.path={tmp_path / 'd.npz'}"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = with_job_data(compose("sweep", overrides=given), given)
        jobs = plan(cfg.sweep)
    assert "data" not in cfg and list(cfg.sweep.overrides) == ["model=pretrained", "data=mnist5k"]   # the zoo's own
    assert [job.config["data"]["path"] for job in jobs] == [str(tmp_path / "d.npz")] * 2
    assert {job.config["data"]["name"] for job in jobs} == {"arrays"}


def test_sweep_add_keeps_the_experiments_own_overrides():
    _, jobs = sweep_config("sweep.add=['optimizer.lr=0.05']")
    assert {job.config["trainer"]["max_epochs"] for job in jobs} == {15}   # experiment=main's
    assert {job.config["optimizer"]["lr"] for job in jobs} == {0.05}
    assert {job.config["optimizer"]["_target_"] for job in jobs if "model=rbf" in job.overrides} == {"torch.optim.Adam"}


def test_the_plan_says_which_axes_the_experiment_added():
    from pipeline.stages.plan import grid_origin

    from pipeline.cli import quote_grid_axes

    given = quote_grid_axes(["sweep.grid.model._target_=pipeline.models.Softmax,pipeline.models.MLP"])   # as typed
    _, jobs = sweep_config(*given)
    assert grid_origin(jobs, given, "main") == \
        "grid: model._target_ 2 (command line) × regularizer 2 (experiment=main) = 4 jobs"
