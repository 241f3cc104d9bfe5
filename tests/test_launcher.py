"""`hydra/launcher=ray` on a real two-node Ray cluster (loopback): a multirun of jobs.train in parallel, Hydra's
folders, each job's results, where the jobs ran, and a failing job reported on its own."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from tests.support.intruder import intrude, intruder_env, leaks

pytestmark = [pytest.mark.slow, pytest.mark.ray]

ROOT = Path(__file__).resolve().parent.parent

# 2 models × 3 learning rates; lr=-1 fails inside training (torch refuses it), after Hydra composed the job fine.
GRID = ["model=softmax,maxout", "optimizer.lr=0.1,0.05,-1"]
SMALL = ["logger=none", "trainer.max_epochs=1", "data.limit=200", "eval.epsilons=[0.0,0.25]"]


@pytest.fixture(scope="module")
def multirun(ray_cluster, tmp_path_factory):
    """The multirun, once, on a cluster of two 1-CPU nodes; while it runs, an outsider tries the cluster."""
    tmp, cluster = tmp_path_factory.mktemp("launcher"), ray_cluster
    sweep_dir = tmp / "multirun"
    env = {**os.environ, **cluster.env, "WANDB_MODE": "disabled"}
    env.pop("HYDRA_FULL_ERROR", None)
    command = [sys.executable, "-m", "jobs.train", "-m", "hydra/launcher=ray",
               f"hydra.launcher.address={cluster.address}", *GRID, *SMALL, f"hydra.sweep.dir={sweep_dir}"]
    driver = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        outsider = outsider_tries(cluster.address, driver, tmp / "outsider")
        stdout, stderr = driver.communicate(timeout=600)
    finally:
        if driver.poll() is None:
            driver.kill()
    outsider.leaks = leaks(cluster.env["RAY_AUTH_TOKEN"], sweep_dir, cluster.tmp)
    result = subprocess.CompletedProcess(command, driver.returncode, stdout, stderr)
    return sweep_dir, result, cluster.node_ids(), outsider


def outsider_tries(address: str, driver: subprocess.Popen, home: Path) -> SimpleNamespace:
    """While `driver` runs: the intruder (its own HOME, no token) at the cluster's GCS, and, at the same time, a user
    without the token who joins with the launcher."""
    join = subprocess.Popen([sys.executable, "-m", "jobs.train", "-m", "hydra/launcher=ray",
                             f"hydra.launcher.address={address}", *SMALL, f"hydra.sweep.dir={home / 'join'}"],
                            cwd=ROOT, env=intruder_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    verdict = intrude(address, home)
    _, join_stderr = join.communicate(timeout=300)
    print(f"local two-node cluster ({address}), Ray launcher: intruder {verdict}")
    return SimpleNamespace(verdict=verdict, join_code=join.returncode, join_stderr=join_stderr,
                           while_running=driver.poll() is None, leaks=[])


def job_folders(sweep_dir: Path) -> dict[str, Path]:
    return {path.name: path for path in sweep_dir.iterdir() if path.is_dir()}


def overrides(folder: Path) -> list[str]:
    return yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text())


@pytest.mark.slow
def test_hydra_writes_its_multirun_folders(multirun):
    sweep_dir, result, *_ = multirun
    assert yaml.safe_load((sweep_dir / "multirun.yaml").read_text())["hydra"]["launcher"]["_target_"].endswith(
        "RayLauncher")
    folders = job_folders(sweep_dir)
    assert sorted(folders) == [str(n) for n in range(6)], result.stderr[-3000:]
    seen = set()
    for folder in folders.values():
        assert {"config.yaml", "hydra.yaml", "overrides.yaml"} <= {p.name for p in (folder / ".hydra").iterdir()}
        seen.add(tuple(o for o in overrides(folder) if o.startswith(("model=", "optimizer.lr="))))
    assert len(seen) == 6                                           # every combination, once


@pytest.mark.slow
def test_every_good_job_completes_and_they_ran_on_both_nodes(multirun):
    sweep_dir, result, nodes, _ = multirun
    good = {name: folder for name, folder in job_folders(sweep_dir).items()
            if "optimizer.lr=-1" not in overrides(folder)}
    assert len(good) == 4
    metrics = [json.loads((folder / "metrics.json").read_text()) for folder in good.values()]
    assert all(m["epochs"] == 1 and [r["eps"] for r in m["curve"]] == [0.0, 0.25] for m in metrics)
    assert all("clean error" in (folder / "job.log").read_text() for folder in good.values())   # what it printed
    assert {m["ray_node_id"] for m in metrics} == set(nodes.values()), result.stderr[-3000:]
    assert "[multirun] 4/6 done, 0 running, 2 failed, 0 queued" in result.stderr


@pytest.mark.slow
def test_failed_jobs_are_named_one_by_one_and_the_command_fails(multirun):
    sweep_dir, result, *_ = multirun
    assert result.returncode == 1
    bad = {name: folder for name, folder in job_folders(sweep_dir).items() if "optimizer.lr=-1" in overrides(folder)}
    assert len(bad) == 2
    for name, folder in bad.items():
        assert not (folder / "metrics.json").exists()
        reason = json.loads((folder / "failure.json").read_text())["reason"]
        assert "Invalid learning rate" in reason
        line = next(line for line in result.stderr.splitlines() if line.startswith(f"[multirun] job #{name} "))
        assert "optimizer.lr=-1" in line and reason in line and str(folder) in line
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: job #") and "optimizer.lr=-1" in last and "1 more of 6 jobs failed" in last


@pytest.mark.slow
def test_an_outsider_can_neither_join_nor_run_a_task_and_the_token_stays_out_of_files(multirun):
    _, result, _, outsider = multirun
    assert outsider.while_running, "the multirun ended before the outsider was done: the test proves nothing"
    assert outsider.verdict.startswith("refused"), outsider.verdict
    assert outsider.join_code == 2, outsider.join_stderr[-2000:]
    last = outsider.join_stderr.strip().splitlines()[-1]
    assert last.startswith("error: the Ray cluster at hydra.launcher.address=") and "RAY_AUTH_TOKEN" in last, last
    assert "Traceback" not in outsider.join_stderr
    assert outsider.leaks == []                       # job folders, .hydra/, the nodes' logs; no command line
    assert "Ray token authentication is off" not in result.stderr


def test_unreachable_address_is_one_line_and_exit_code_2(tmp_path):
    env = {**os.environ, "WANDB_MODE": "disabled"}
    env.pop("HYDRA_FULL_ERROR", None)
    result = subprocess.run([sys.executable, "-m", "jobs.train", "-m", "hydra/launcher=ray",
                             "hydra.launcher.address=127.0.0.1:9", *SMALL, f"hydra.sweep.dir={tmp_path}"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: hydra.launcher.address=127.0.0.1:9 is unreachable")


def launcher_config(name: str) -> dict:
    """hydra.launcher as `python -m jobs.train hydra/launcher=<name>` composes it."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from pipeline.config import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        config = compose("config", [f"hydra/launcher={name}"], return_hydra_config=True)
    return OmegaConf.to_container(config.hydra.launcher)


def test_harness_ray_option_is_the_plugins_registered_config():
    """One source of defaults: conf/hydra/launcher/ray.yaml adds nothing to the plugin's `harness_ray`."""
    from omegaconf import OmegaConf

    from hydra_plugins.harness_ray_launcher.config import NAME, RayLauncherConf

    defaults = OmegaConf.to_container(OmegaConf.structured(RayLauncherConf))
    assert launcher_config("ray") == launcher_config(NAME) == defaults


@dataclasses.dataclass
class HydraRayLauncherConf:   # what hydra-ray-launcher registers as hydra/launcher=ray (its _config.py)
    _target_: str = "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"
    ray: dict = dataclasses.field(default_factory=lambda: {"init": {"address": None}, "remote": {}})


def test_beside_hydra_ray_launcher_harness_ray_is_ours_and_ray_is_refused(hydra_restore_singletons):
    """Both plugins installed: Hydra matches conf's ray.yaml with their `ray` (its deprecated automatic schema
    matching) and refuses the merge; `harness_ray` is untouched (README: "Use the Ray launcher in your own app")."""
    from hydra.core.config_store import ConfigStore
    from hydra.errors import ConfigCompositionException

    from hydra_plugins.harness_ray_launcher.config import NAME

    ConfigStore.instance().store(group="hydra/launcher", name="ray", node=HydraRayLauncherConf,
                                 provider="ray_launcher")
    assert launcher_config(NAME)["_target_"] == "hydra_plugins.harness_ray_launcher.ray_launcher.RayLauncher"
    with pytest.raises(ConfigCompositionException), pytest.warns(UserWarning, match="validated against ConfigStore"):
        launcher_config("ray")
