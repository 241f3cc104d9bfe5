"""Run a sweep's jobs on Ray: one task per job, wherever there is room; Ray queues, places and retries them.

Workers are reused across jobs (imports paid once per worker, also for GPU tasks), fractional GPUs pack small
jobs onto one GPU, and the driver prints progress. Job directories live on storage every node sees (the
sweep directory); a job whose results are already complete is not run again.
"""
from __future__ import annotations

import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from pipeline import store
from pipeline.errors import ConfigError
from pipeline.plan import Job


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
    """A job that no node can hold would wait forever: refuse it while planning."""
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if not any(r.get("CPU", 0) >= cpus and r.get("GPU", 0) >= gpus for r in nodes):
        largest = max(((r.get("CPU", 0), r.get("GPU", 0)) for r in nodes), default=(0, 0))
        raise ConfigError(f"resources.cpu={cpus}, resources.gpu={gpus}: no node of this cluster has that much "
                          f"(largest: {largest[0]:g} CPUs, {largest[1]:g} GPUs)")


def _progress_board():
    import ray

    @ray.remote(num_cpus=0)
    class ProgressBoard:
        """Where tasks say that they started, so the driver can tell running jobs from queued ones."""

        def __init__(self) -> None:
            self.running: set[str] = set()

        def started(self, job_id: str) -> None:
            self.running.add(job_id)

        def finished(self, job_id: str) -> None:
            self.running.discard(job_id)

        def snapshot(self) -> list[str]:
            return sorted(self.running)

    # On the driver's node: a board on a lost worker node would take the progress display down with it.
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    return ProgressBoard.options(scheduling_strategy=here).remote()


def running_jobs(board) -> int | None:
    """How many jobs say they are running; None if the board is gone (progress shows fewer details then)."""
    import ray

    try:
        return len(ray.get(board.snapshot.remote(), timeout=10))
    except Exception:  # noqa: BLE001 - progress display only
        return None


def _train(config: dict[str, Any], job_dir: str, run_name: str, board) -> dict[str, Any]:
    """The body of one Ray task: the same `run_job` as `jobs.train`."""
    import ray
    from omegaconf import OmegaConf

    from pipeline.job import run_job

    board.started.remote(config["job_id"])
    try:
        extra = {"ray_node_id": ray.get_runtime_context().get_node_id()}
        metrics = run_job(OmegaConf.create(config), Path(job_dir), run_name=run_name, extra=extra)
        return {"job_id": metrics["job_id"], "node": extra["ray_node_id"], "seconds": metrics["train_seconds"]}
    finally:
        board.finished.remote(config["job_id"])


@dataclass
class Outcome:
    trained: list[str] = field(default_factory=list)      # job ids trained in this run
    reused: list[str] = field(default_factory=list)       # job ids whose results were already complete
    failed: dict[str, str] = field(default_factory=dict)  # job id -> reason

    @property
    def complete(self) -> list[str]:
        return self.reused + self.trained


class Progress:
    """One status line on the driver: done / running / failed / queued and an ETA, printed when the counts change
    (or every `heartbeat` seconds), so a log file gets a line per event, not one per poll."""

    def __init__(self, total: int, stream=sys.stderr, heartbeat: float = 60.0) -> None:
        self.total, self.stream, self.heartbeat = total, stream, heartbeat
        self.started = self.printed_at = time.monotonic()
        self.last: tuple[int, int, int] | None = None

    def show(self, done: int, running: int, failed: int, final: bool = False) -> None:
        now = time.monotonic()
        if (done, running, failed) == self.last and now - self.printed_at < self.heartbeat and not final:
            return
        queued = self.total - done - running - failed
        eta = f"ETA {(now - self.started) / done * (self.total - done - failed):.0f}s" if done else "ETA ?"
        print(f"[sweep] {done}/{self.total} done, {running} running, {failed} failed, {queued} queued, {eta}",
              file=self.stream, flush=True)
        self.last, self.printed_at = (done, running, failed), now


def job_dir(sweep_dir: Path, job: Job) -> Path:
    return Path(sweep_dir) / "jobs" / job.id


def run_jobs(jobs: Iterable[Job], sweep_dir: Path, cpus: float = 1, gpus: float = 0, retries: int = 2,
             force: bool = False, poll_seconds: float = 2.0) -> Outcome:
    """Train every job whose results are missing or incomplete (all of them with force=True)."""
    import ray

    jobs = list(jobs)
    outcome = Outcome()
    todo = []
    for job in jobs:
        if not force and store.is_complete(job_dir(sweep_dir, job)):
            outcome.reused.append(job.id)
        else:
            todo.append(job)
    if not todo:
        return outcome
    check_fits(cpus, gpus)
    board = _progress_board()
    # max_calls=0 keeps workers alive across tasks (Ray's default for GPU tasks is a fresh process per task);
    # retries cover lost workers and nodes; an exception raised by the job itself is final (it would repeat).
    task = ray.remote(max_calls=0)(_train).options(num_cpus=cpus, num_gpus=gpus, max_retries=retries,
                                                   retry_exceptions=False, name="train_job")
    pending = {task.remote(job.config, str(job_dir(sweep_dir, job)), job.label, board): job for job in todo}
    progress = Progress(len(jobs))
    done = len(outcome.reused)
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=poll_seconds)
        for ref in ready:
            job = pending.pop(ref)
            try:
                ray.get(ref)
                outcome.trained.append(job.id)
            except Exception as error:  # noqa: BLE001 - a failed job is reported, the sweep goes on
                outcome.failed[job.id] = failure_reason(job_dir(sweep_dir, job), error)
        running = running_jobs(board)
        running = len(pending) if running is None else min(running, len(pending))
        progress.show(done + len(outcome.trained), running, len(outcome.failed))
    progress.show(done + len(outcome.trained), 0, len(outcome.failed), final=True)
    ray.kill(board)
    return outcome


def failure_reason(directory: Path, error: Exception) -> str:
    """The job's own failure record when it wrote one, else the first line of Ray's error."""
    try:
        return store.read_json(directory / store.FAILURE)["reason"]
    except (OSError, ValueError, KeyError):
        text = str(error).strip().splitlines()
        return f"{type(error).__name__}: {text[-1] if text else ''}"
