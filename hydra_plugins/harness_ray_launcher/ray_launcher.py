"""Hydra's `hydra/launcher=harness_ray` (config.py; `ray` in Harness's apps): a multirun's jobs as Ray 2.x tasks.

Hydra's own hydra-ray-launcher is tied to Ray 1.x. This launcher composes every job's config on the driver, as
Hydra's basic launcher does, and runs each job as one task of `pipeline.cluster.tasks.run_tasks`, the runner of
the sweep's stages (same retries, GPU option and progress lines). Inside the task, Hydra's `run_job` gives the job
its folder (hydra.sweep.dir/<subdir>, with .hydra/) and calls the app's task function: for jobs.train, the same
`pipeline.training.job.run_job` as everywhere. A failed job is reported by number and overrides; the others finish.

Hydra's plugin scan imports this module at every start of every app: nothing heavy is imported at module level.
"""
from __future__ import annotations

import logging
import os
import sys
import sysconfig
import traceback
from pathlib import Path
from typing import Any, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


class RayLauncher(Launcher):
    def __init__(self, address: str | None = None, cpus: float = 1, gpus: float = 0, retries: int = 2,
                 num_cpus: int | None = None, num_gpus: int | None = None,
                 object_store_memory: int | None = None, auth: bool = True) -> None:
        self.address, self.cpus, self.gpus, self.retries, self.auth = address, cpus, gpus, retries, auth
        self.local = {"num_cpus": num_cpus, "num_gpus": num_gpus, "object_store_memory": object_store_memory}
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.task_function, self.hydra_context = config, task_function, hydra_context

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import ray

        from pipeline.cluster import check_fits, connect
        from pipeline.cluster.tasks import run_tasks
        from pipeline.errors import ConfigError, JobFailed
        from pipeline.store import failure_reason

        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        if self.cpus < 0 or self.gpus < 0 or self.retries < 0:
            raise ConfigError(f"hydra.launcher.cpus={self.cpus}, gpus={self.gpus}, retries={self.retries}: "
                              "per-job CPUs and GPUs and the retries must be ≥ 0")
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        # Absolute: a task runs wherever Ray puts it (the folder must be on storage every node sees).
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).absolute()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        connect(self.address, **self.local, key="hydra.launcher.address", auth=self.auth)
        check_fits(self.cpus, self.gpus, keys=("hydra.launcher.cpus", "hydra.launcher.gpus"))
        log.info(f"Launching {len(job_overrides)} jobs on Ray ({self.address or 'started here'}): "
                 f"{self.cpus:g} CPUs, {self.gpus:g} GPUs each")

        configs: dict[str, DictConfig] = {}
        for number, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{number} : {' '.join(filter_overrides(overrides))}")
            config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(config):
                config.hydra.job.id = config.hydra.job.num = number
                config.hydra.sweep.dir = str(sweep_dir)
            configs[str(number)] = config
        # What every task shares goes to the object store once; Ray hands each task the value.
        shared = ray.put((self.hydra_context, self.task_function, Singleton.get_state()))
        folders = {key: job_folder(config) for key, config in configs.items()}
        calls = {key: (shared, config, str(folders[key])) for key, config in configs.items()}
        outcome = run_tasks("multirun", run_one, calls, self.cpus, self.gpus, self.retries,
                            reason=lambda key, error: failure_reason(folders[key], error))

        returns = []
        for key, overrides in zip(configs, job_overrides):
            if key in outcome.results:
                returns.append(outcome.results[key])
                continue
            reason, others = outcome.failed[key], len(outcome.failed) - 1
            described = f"job #{key} ({' '.join(filter_overrides(overrides))})"
            print(f"[multirun] {described} failed: {reason}; folder {folders[key]}", file=sys.stderr, flush=True)
            failed = JobReturn(overrides=list(overrides), status=JobStatus.FAILED, working_dir=str(folders[key]))
            failed.return_value = JobFailed(f"{described} failed: {reason}" +
                                            (f"; {others} more of {len(configs)} jobs failed (listed above)"
                                             if others else ""))
            returns.append(failed)
        return returns


def job_folder(config: DictConfig) -> Path:
    """hydra.sweep.dir/hydra.sweep.subdir, resolved as Hydra's run_job resolves it (with this job's HydraConfig)."""
    hydra_config = HydraConfig.instance()
    before = hydra_config.cfg
    hydra_config.set_config(config)
    try:
        return Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)
    finally:
        hydra_config.cfg = before


def run_one(shared: tuple[HydraContext, TaskFunction, dict[str, Any]], config: DictConfig, folder: str) -> JobReturn:
    """One job, in a Ray task: Hydra's run_job in the driver's working folder when this node has it (shared storage:
    relative paths mean what they mean with the basic launcher), everything it prints in <folder>/job.log. A failed
    job raises, so that the runner counts it, with its own traceback in job.log and, when the app wrote no failure
    record of its own, one whose reason ends with the file and line that raised (the sweep's `error:` line)."""
    from pipeline.errors import JobFailed, one_line
    from pipeline.store import FAILURE, job_log, write_failure

    hydra_context, task_function, singletons = shared
    setup_globals()
    Singleton.set_state(singletons)
    here = os.getcwd()
    if os.path.isdir(config.hydra.runtime.cwd):
        os.chdir(config.hydra.runtime.cwd)
    (Path(folder) / FAILURE).unlink(missing_ok=True)   # an earlier run's record would name another failure
    try:
        with job_log(Path(folder)):
            result = run_job(hydra_context=hydra_context, task_function=task_function, config=config,
                             job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
            if result.status == JobStatus.FAILED:   # as Hydra's basic launcher prints it: the app's frames only
                print(own_traceback(result._return_value), file=sys.stderr, end="")
    except SystemExit as exit:   # an app's exit on bad input ends this job, not the worker
        raise JobFailed(f"the job exited with code {exit.code}") from None
    finally:
        os.chdir(here)
    if result.status == JobStatus.FAILED:
        error = result._return_value
        if not (Path(folder) / FAILURE).exists():
            write_failure(Path(folder), f"{type(error).__name__}: {one_line(error)} ({raised_at(error)})",
                          own_traceback(error))
        raise error
    return result


def raised_at(error: BaseException) -> str:
    """file:line of the innermost frame of the app's own code (not Python's or an installed package's), where the
    job went wrong as its author reads it; else of the innermost frame."""
    frames = traceback.extract_tb(error.__traceback__)
    libraries = (sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"])
    own = [frame for frame in frames if not frame.filename.startswith(libraries)] or frames
    return f"{own[-1].filename}:{own[-1].lineno}"


def own_traceback(error: BaseException) -> str:
    """The traceback of a job's exception without Hydra's frames above the app's task function."""
    frames = traceback.extract_tb(error.__traceback__)
    own = [frame for frame in frames if f"{os.sep}hydra{os.sep}" not in frame.filename] or frames
    return "".join(["Traceback (most recent call last):\n", *traceback.StackSummary.from_list(own).format(),
                    *traceback.format_exception_only(type(error), error)])
