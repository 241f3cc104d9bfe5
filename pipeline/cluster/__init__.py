"""Ray: join a cluster or start one here, check that a task fits a node, and run a stage's tasks on it
(`pipeline.cluster.tasks`). `pipeline.cluster.local` starts a multi-node cluster on one machine (tests, laptops).
"""
from __future__ import annotations

import os
import socket
from typing import Any

from pipeline.errors import ConfigError


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on an unreachable `host:port` instead of letting ray.init wait."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"cluster.address={address!r}; use 'auto', 'host:port' or null to start Ray here")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as error:
        raise ConfigError(f"cluster.address={address} is unreachable ({error.strerror or error}); "
                          "start Ray there (`ray start --head`) or use cluster=local") from None


def connect(address: str | None, num_cpus: int | None = None, num_gpus: int | None = None,
            object_store_memory: int | None = None) -> None:
    """Join the cluster at `address` ('auto', 'host:port'), or start Ray on this machine when it is None."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address is None:   # a private single-machine instance: no token (it would leak into later `ray start` clusters)
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if ray.is_initialized():
        return
    if address not in (None, "auto"):
        check_reachable(address)
    # "local" starts a new instance even where RAY_ADDRESS points elsewhere: cluster=local means this machine.
    kwargs: dict[str, Any] = {"address": address or "local", "log_to_driver": False, "configure_logging": False}
    if address is None:
        kwargs.update(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                      object_store_memory=object_store_memory)
    try:
        ray.init(**kwargs)
    except ConnectionError as error:
        raise ConfigError(f"cannot join the Ray cluster at cluster.address={address} ({error}); "
                          "is a Ray head running there?") from None


def check_fits(cpus: float, gpus: float) -> None:
    """A task that no node can hold would wait forever: refuse it before submitting anything."""
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if not any(r.get("CPU", 0) >= cpus and r.get("GPU", 0) >= gpus for r in nodes):
        largest = max(((r.get("CPU", 0), r.get("GPU", 0)) for r in nodes), default=(0, 0))
        raise ConfigError(f"resources.cpu={cpus}, resources.gpu={gpus}: no node of this cluster has that much "
                          f"(largest: {largest[0]:g} CPUs, {largest[1]:g} GPUs)")
