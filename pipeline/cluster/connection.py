"""Ray: join a cluster or start one here, check that a task fits a node, and say where this task runs."""
from __future__ import annotations

import os
import socket
import sys
from typing import Any

from pipeline.errors import ConfigError

# Ray's metrics (a Prometheus endpoint on every node that answers anyone, token or not: session, task names, node
# addresses) serve no sweep: every cluster Harness starts has them off (slurm/sweep.sbatch says the same in JSON).
SYSTEM_CONFIG = {"enable_metrics_collection": False}


def check_reachable(address: str, timeout: float = 5.0, key: str = "cluster.address") -> None:
    """Fail fast on an unreachable `host:port` instead of letting ray.init wait; `key` is the setting named."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"{key}={address!r}; use 'auto', 'host:port' or null to start Ray here")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as error:
        raise ConfigError(f"{key}={address} is unreachable ({error.strerror or error}); "
                          f"start Ray there (`ray start --head`) or set {key}=null to start Ray here") from None


def connect(address: str | None, num_cpus: int | None = None, num_gpus: int | None = None,
            object_store_memory: int | None = None, key: str = "cluster.address", auth: bool = True) -> None:
    """Join the cluster at `address` ('auto', 'host:port') with the user's Ray token, or start Ray on this machine
    when it is None, with a fresh token (pipeline.cluster.auth; `auth=False` turns it off, with a warning); errors
    name the setting `key`."""
    import ray

    from pipeline.cluster import auth as ray_auth

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return
    if address not in (None, "auto"):
        check_reachable(address, key=key)
    ray_auth.use_here(ray_auth.cluster_env(auth) if address is None else ray_auth.join_env(auth))
    # "local" starts a new instance even where RAY_ADDRESS points elsewhere: cluster=local means this machine.
    kwargs: dict[str, Any] = {"address": address or "local", "log_to_driver": False, "configure_logging": False}
    if address is None:
        kwargs.update(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                      object_store_memory=object_store_memory, _system_config=SYSTEM_CONFIG)
    try:
        ray.init(**kwargs)
    except Exception as error:
        if ray_auth.is_refusal(error):
            raise ConfigError(f"the Ray cluster at {key}={address} refused this process's token; "
                              f"{ray_auth.HOW_TO_JOIN}") from None
        if isinstance(error, ConnectionError):
            raise ConfigError(f"cannot join the Ray cluster at {key}={address} ({error}); "
                              "is a Ray head running there?") from None
        raise


def check_fits(cpus: float, gpus: float, keys: tuple[str, str] = ("resources.cpu", "resources.gpu")) -> None:
    """A task that no node can hold would wait forever: refuse it before submitting anything (naming `keys`)."""
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if not any(r.get("CPU", 0) >= cpus and r.get("GPU", 0) >= gpus for r in nodes):
        largest = max(((r.get("CPU", 0), r.get("GPU", 0)) for r in nodes), default=(0, 0))
        raise ConfigError(f"{keys[0]}={cpus}, {keys[1]}={gpus}: no node of this cluster has that much "
                          f"(largest: {largest[0]:g} CPUs, {largest[1]:g} GPUs)")


def ray_node() -> dict[str, str]:
    """{"ray_node_id": ...} when this runs in a Ray task (metrics.json records where a job ran), else {}. Only looks
    at a Ray that is already imported: a job outside Ray pays nothing."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return {}
    return {"ray_node_id": ray.get_runtime_context().get_node_id()}


def ray_gpu_ids() -> list[str] | None:
    """The GPU ids Ray assigned this task ([] for none); None outside a Ray task (Ray's driver included). Like
    ray_node, only looks at a Ray that is already imported."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized() or ray.get_runtime_context().worker.mode != ray.WORKER_MODE:
        return None
    return [str(i) for i in ray.get_gpu_ids()]
