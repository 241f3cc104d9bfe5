"""The wheel works anywhere: built from this checkout, installed (not editable) into a fresh venv, its console
scripts run from a folder that is not the checkout, with conf/ and the Hydra plugin coming from the wheel."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ("pyproject.toml", "README.md", "conf", "pipeline", "jobs", "benchmarks", "hydra_plugins")
SCRIPTS = ("harness-train", "harness-sweep", "harness-transfer", "harness-report", "harness-benchmark")


def test_pyproject_lists_every_package():
    """conf/ ships through a package-dir mapping, which rules out package discovery: the list must be complete."""
    from setuptools import find_packages
    from setuptools.config.pyprojecttoml import read_configuration

    declared = set(read_configuration(ROOT / "pyproject.toml")["tool"]["setuptools"]["packages"])
    found = set(find_packages(str(ROOT), include=["pipeline", "pipeline.*", "jobs", "jobs.*", "benchmarks",
                                                  "benchmarks.*"]))
    found |= {f"hydra_plugins.{name}" for name in find_packages(str(ROOT / "hydra_plugins"))}
    assert declared == found | {"pipeline.conf", "hydra_plugins"}   # the namespace, for editable installs


PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]


def copy_of_checkout(tmp: Path) -> Path:
    """What the package is built from, copied (building in place would leave build/ and *.egg-info here)."""
    source = tmp / "source"
    source.mkdir()
    for name in SHIPPED:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    return source


def venv_with(tmp: Path, *install: str) -> dict[str, Path]:
    """A fresh venv that borrows this venv's packages through a .pth file (nothing is downloaded), with
    `pip install <install>` done in it, and a work folder outside the checkout."""
    venv, work = tmp / "venv", tmp / "elsewhere"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "_harness_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    # --ignore-installed: this venv's editable harness is visible there too; never touch it, only add ours.
    result = subprocess.run([*PIP, "--python", str(python), "install", "--no-deps", "--no-build-isolation",
                             "--no-index", "--ignore-installed", *install], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    work.mkdir()
    return {"venv": venv, "site": Path(site), "work": work}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, Path]:
    """The wheel, built from a copy of the checkout and installed (not editable) into a fresh venv."""
    tmp = tmp_path_factory.mktemp("wheel")
    dist = tmp / "dist"
    build = subprocess.run([*PIP, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(dist),
                            str(copy_of_checkout(tmp))], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    [wheel] = dist.glob("harness-*.whl")
    return {**venv_with(tmp, str(wheel)), "wheel": wheel}


def run(installed: dict[str, Path], *command: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """A command of the fresh venv, from a folder outside the checkout, with nothing of the checkout on the path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HYDRA_FULL_ERROR", "RAY_ADDRESS")}
    bin_dir = installed["venv"] / "bin"
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(installed["venv"]),
               WANDB_MODE="disabled", PYTHONIOENCODING="utf-8")
    return subprocess.run([str(bin_dir / command[0]), *command[1:]], cwd=installed["work"], env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_the_wheel_holds_conf_and_the_plugin_and_they_load_from_it(installed):
    result = run(installed, "python", "-c", "import pipeline, jobs.train, hydra_plugins.harness_ray_launcher as p; "
                 "from pipeline.config import CONF_DIR; print(pipeline.__file__, CONF_DIR, p.__file__, sep='\\n')")
    assert result.returncode == 0, result.stderr[-2000:]
    package, conf, plugin = (Path(line) for line in result.stdout.split())
    site = installed["site"]
    assert package == site / "pipeline" / "__init__.py" and plugin.parent.parent.parent == site
    assert conf == site / "pipeline" / "conf" and (conf / "hydra" / "launcher" / "ray.yaml").is_file()
    assert sorted(p.name for p in (conf / "model").glob("*.yaml")) == sorted(
        p.name for p in (ROOT / "conf" / "model").glob("*.yaml"))


@pytest.mark.slow
def test_every_console_script_starts_from_any_folder(installed):
    for script in SCRIPTS:
        result = run(installed, script, "--help")
        assert result.returncode == 0, f"{script}: {result.stderr[-2000:]}"
        assert result.stdout.strip(), script
    assert "experiment: goodfellow2015, goodfellow2015_cpu, main, smoke" in run(installed, "harness-sweep",
                                                                                "--help").stdout
    result = run(installed, "harness-train", "hydra/launcher=ray", "--cfg", "hydra")   # the launcher composes
    assert result.returncode == 0, result.stderr[-2000:]
    assert yaml.safe_load(result.stdout)["hydra"]["launcher"]["_target_"].endswith("ray_launcher.RayLauncher")


@pytest.mark.slow
def test_harness_train_prints_the_config_and_trains_one_epoch(installed):
    result = run(installed, "harness-train", "--cfg", "job", "model=maxout")
    assert result.returncode == 0, result.stderr[-2000:]
    cfg = yaml.safe_load(result.stdout)
    assert cfg["model"]["_target_"] == "pipeline.models.Maxout" and cfg["data"]["name"] == "mnist5k"

    result = run(installed, "harness-train", "logger=none", "trainer.max_epochs=1", "data.limit=200")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "clean error" in result.stdout
    [metrics] = (installed["work"] / "outputs" / "train").glob("*/metrics.json")
    assert '"epochs": 1' in metrics.read_text()


@pytest.mark.slow
def test_an_editable_install_shows_the_plugin_to_hydras_scan_from_any_folder(tmp_path):
    """`pip install -e .` (make setup): Hydra lists the `hydra_plugins` namespace's folders (pkgutil), so the
    checkout's hydra_plugins/ must be one of them, not a module only the editable import hook knows."""
    editable = venv_with(tmp_path, "-e", str(copy_of_checkout(tmp_path)))
    result = run(editable, "python", "-c", "from hydra.core.plugins import Plugins; from hydra.plugins.launcher "
                 "import Launcher; from hydra.core.config_store import ConfigStore; "
                 "print(*(p.__module__ for p in Plugins.instance().discover(Launcher))); "
                 "print(ConfigStore.instance().load('hydra/launcher/harness_ray.yaml').node._target_)")
    assert result.returncode == 0, result.stderr[-2000:]
    launchers, target = result.stdout.splitlines()
    assert "hydra_plugins.harness_ray_launcher.ray_launcher" in launchers.split()
    assert target == "hydra_plugins.harness_ray_launcher.ray_launcher.RayLauncher"
