"""Hydra's own launcher test suites (`hydra.test_utils.launcher_common_tests`, the ones the launcher plugins in
Hydra's repository pass), run on `hydra/launcher=harness_ray` the way any Hydra app uses it: Hydra's test apps and
configs, none of Harness's, and the plugin found by Hydra's scan of the installed package (IntegrationTestSuite
runs each app as a subprocess in a temporary folder). Parametrized as Hydra's plugins do it in their repositories.

Cost: every job joins one Ray cluster started for the module (RAY_ADDRESS in the environment, address=auto)
instead of each test starting Ray on its own."""
from __future__ import annotations

import pytest
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.test_utils.launcher_common_tests import IntegrationTestSuite, LauncherTestSuite

from hydra_plugins.harness_ray_launcher.config import NAME
from hydra_plugins.harness_ray_launcher.ray_launcher import RayLauncher

pytestmark = [pytest.mark.slow, pytest.mark.ray]

JOIN = "hydra.launcher.address=auto"


@pytest.fixture(scope="module", autouse=True)
def one_ray_cluster(ray_cluster):
    """The cluster every test's jobs run on; its environment (address, auth) is this process's and its apps'."""
    import ray

    with pytest.MonkeyPatch.context() as patch:
        for key, value in ray_cluster.env.items():
            patch.setenv(key, value)
        try:
            yield ray_cluster
        finally:
            ray.shutdown()   # the suite's in-process sweeps made this process a driver of the cluster


def test_discovery() -> None:
    assert RayLauncher.__name__ in [plugin.__name__ for plugin in Plugins.instance().discover(Launcher)]


@pytest.fixture
def overrides() -> list[str]:
    """A fresh list per test: the suite's sweep_2_jobs extends the list it is given."""
    return [JOIN]


@pytest.mark.parametrize("launcher_name", [NAME])
class TestHarnessRayLauncher(LauncherTestSuite):
    pass


@pytest.mark.parametrize("task_launcher_cfg, extra_flags", [
    ({}, ["-m", f"hydra/launcher={NAME}", JOIN, "hydra/hydra_logging=hydra_debug", "hydra/job_logging=disabled"]),
])
class TestHarnessRayLauncherIntegration(IntegrationTestSuite):
    pass
