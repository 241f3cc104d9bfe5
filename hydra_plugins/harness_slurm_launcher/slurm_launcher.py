"""Hydra's `hydra/launcher=slurm` (conf/hydra/launcher/slurm.yaml): hydra-submitit-launcher's SLURM launcher, with
the request checked against `sinfo` before anything is submitted (pipeline/cluster/slurm.py) and a refused
submission reported in one line. Everything else (the job array, waiting, results) is submitit's.

Hydra's plugin scan imports this module at every start of every app: submitit is imported only when launching, so
apps start as fast, and without a warning, where hydra-submitit-launcher is not installed.
"""
from __future__ import annotations

from typing import Any, Sequence

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class SlurmLauncher(Launcher):
    def __init__(self, **params: Any) -> None:
        self.params = params
        self.setup_args: dict[str, Any] = {}

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.setup_args = {"hydra_context": hydra_context, "task_function": task_function, "config": config}

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititLauncher
        from submitit.core.utils import FailedJobError

        from pipeline.cluster.slurm import check_request, sinfo
        from pipeline.errors import ConfigError

        check_request(request(self.params), *sinfo())
        launcher = SubmititLauncher(**self.params)
        launcher.setup(**self.setup_args)
        try:
            return launcher.launch(job_overrides, initial_job_idx)
        except FailedJobError as error:
            refusal = [line for line in str(error).splitlines() if "sbatch: error" in line]
            if not refusal:   # a job failed after it was submitted: not a matter of input
                raise
            raise ConfigError(f"hydra/launcher=slurm: {refusal[0].strip()}") from None


def request(params: dict[str, Any]):
    """What each job asks of its nodes, from the launcher's settings."""
    from pipeline.cluster.slurm import Request

    return Request(partition=params.get("partition"), nodes=params.get("nodes") or 1,
                   cpus=(params.get("tasks_per_node") or 1) * (params.get("cpus_per_task") or 1),
                   memory_gb=params.get("mem_gb") or 0, gpus=params.get("gpus_per_node") or 0,
                   time_min=params.get("timeout_min") or 0)
