"""Ray for the stages: connection (join a cluster or start one here, check that a task fits), tasks (run a
stage's tasks on it), auth (its token); local starts a multi-node cluster on one machine (tests, laptops),
processes finds its processes, slurm checks a request against sinfo."""
from pipeline.cluster.connection import SYSTEM_CONFIG, check_fits, check_reachable, connect, ray_gpu_ids, ray_node

__all__ = ["SYSTEM_CONFIG", "check_fits", "check_reachable", "connect", "ray_gpu_ids", "ray_node"]
