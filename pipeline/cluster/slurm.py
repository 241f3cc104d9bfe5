"""SLURM: check a request against what `sinfo` says the cluster has, before anything is submitted.

sbatch refuses an unknown partition with a traceback deep in submitit, and accepts a request no node can hold,
which then waits forever. Both are bad input: one line naming the setting and what the cluster offers.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

from pipeline.errors import ConfigError


@dataclass(frozen=True)
class Node:
    """One node of one partition, as `sinfo -N` lists it (a node in two partitions is listed twice)."""
    partition: str
    name: str
    cpus: int
    memory_mb: int
    gpus: int
    time_limit_min: float          # the partition's; inf when unlimited


@dataclass(frozen=True)
class Request:
    """What each job asks for on each of its nodes (hydra.launcher.* of conf/hydra/launcher/slurm.yaml)."""
    partition: str | None = None   # None: the cluster's default partition
    nodes: int = 1
    cpus: int = 1                  # per node: tasks_per_node × cpus_per_task
    memory_gb: float = 0
    gpus: int = 0
    time_min: float = 0


def gpu_count(gres: str) -> int:
    """GPUs in a `%G` field: `gpu:2`, `gpu:a100:4(S:0-1)`, `gpu:2,mps:100`, `(null)`."""
    total = 0
    for item in re.sub(r"\([^)]*\)", "", gres).split(","):
        name, *rest = item.split(":")
        if name == "gpu" and rest and rest[-1].isdigit():
            total += int(rest[-1])
    return total


def minutes(limit: str) -> float:
    """A `%l` time limit (`infinite`, `1-12:00:00`, `2:00:00`, `30:00`) in minutes."""
    days, _, clock = limit.rpartition("-")
    parts = clock.split(":")
    if not all(p.isdigit() for p in parts) or (days and not days.isdigit()):
        return float("inf")
    seconds = sum(int(p) * 60 ** i for i, p in enumerate(reversed(parts)))
    return int(days or 0) * 1440 + seconds / 60


def sinfo() -> tuple[list[Node], str | None]:
    """Every node of every partition, and the default partition (None when the cluster has none)."""
    if shutil.which("sinfo") is None:
        raise ConfigError("hydra/launcher=slurm: no SLURM here (`sinfo` is not on PATH); run it on the cluster's "
                          "login node")
    result = subprocess.run(["sinfo", "-h", "-N", "-o", "%P|%N|%c|%m|%G|%l"], capture_output=True, text=True,
                            timeout=60)
    if result.returncode != 0:
        raise ConfigError(f"hydra/launcher=slurm: sinfo failed: {result.stderr.strip().splitlines()[0:1]}")
    nodes, default = [], None
    for line in result.stdout.splitlines():
        partition, name, cpus, memory, gres, limit = line.strip().split("|")
        if partition.endswith("*"):
            partition = default = partition[:-1]
        nodes.append(Node(partition, name, int(cpus), int(memory.rstrip("+")), gpu_count(gres), minutes(limit)))
    return nodes, default


def check_request(request: Request, nodes: list[Node], default: str | None) -> None:
    """Refuse, in one line, a partition the cluster lacks or a request that no `request.nodes` of its nodes hold."""
    partitions = list(dict.fromkeys(node.partition for node in nodes))
    named = ", ".join(f"{p} (default)" if p == default else p for p in partitions) or "none"
    partition = request.partition or default
    if partition is None:
        raise ConfigError(f"hydra.launcher.partition=null and this cluster has no default partition; "
                          f"partitions: {named}")
    if partition not in partitions:
        raise ConfigError(f"hydra.launcher.partition={partition}: no such SLURM partition; partitions: {named}")
    members = [node for node in nodes if node.partition == partition]
    fits = [node for node in members if node.cpus >= request.cpus and node.memory_mb >= request.memory_gb * 1024
            and node.gpus >= request.gpus and node.time_limit_min >= request.time_min]
    if len(fits) < request.nodes:
        largest = (f"{max(n.cpus for n in members)} CPUs, {max(n.memory_mb for n in members) / 1024:.1f} GB, "
                   f"{max(n.gpus for n in members)} GPUs, time limit " +
                   ("none" if members[0].time_limit_min == float("inf") else f"{members[0].time_limit_min:g} min"))
        raise ConfigError(
            f"hydra.launcher: {request.nodes} node(s) with {request.cpus} CPUs (tasks_per_node × cpus_per_task), "
            f"{request.memory_gb:g} GB, {request.gpus} GPUs for {request.time_min:g} min: {len(fits)} of the "
            f"{len(members)} node(s) of partition {partition} can hold that (largest: {largest})")
