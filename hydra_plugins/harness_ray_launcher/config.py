"""The launcher's settings, registered in Hydra's ConfigStore as `hydra/launcher=harness_ray`: every Hydra app that
can import this package can name it (Hydra's plugin scan imports this module). The one source of its defaults:
Harness's own `hydra/launcher=ray` (conf/hydra/launcher/ray.yaml) is this entry under a shorter name.

Why not `ray`: hydra-ray-launcher registers `hydra/launcher=ray` too. Installed side by side, `ray` in another app
is theirs and `harness_ray` is ours; in Harness's apps `ray` is refused (Hydra matches conf's ray.yaml against
their entry of the same name and cannot merge the two), `harness_ray` works (tests/test_launcher.py)."""
# No `from __future__ import annotations`: Hydra's plugin scan runs this module before it is in sys.modules,
# where dataclasses would look up string annotations.
from dataclasses import dataclass
from typing import Optional

from hydra.core.config_store import ConfigStore

NAME = "harness_ray"


@dataclass
class RayLauncherConf:
    _target_: str = "hydra_plugins.harness_ray_launcher.ray_launcher.RayLauncher"
    address: Optional[str] = None       # None: start Ray on this machine; "auto": the cluster `ray start` runs here;
                                        # "host:port": that cluster's head
    cpus: float = 1                     # per job (0 or a fraction packs several GPU jobs onto one CPU)
    gpus: float = 0                     # per job; fractions pack several jobs onto one GPU
    retries: int = 2                    # re-runs of a job whose worker or node was lost (a job's own error is final)
    num_cpus: Optional[int] = None      # when Ray starts here (address None): CPUs it may use (None: all cores)
    num_gpus: Optional[int] = None      #   ... and GPUs (None: all)
    object_store_memory: Optional[int] = 500_000_000   # ... and its object store, in bytes
    auth: bool = True                   # Ray token authentication (a fresh token when Ray starts here; else yours);
                                        # False: off, with a warning


ConfigStore.instance().store(group="hydra/launcher", name=NAME, node=RayLauncherConf, provider="harness")
