"""One way to run a stage's tasks, for every stage (train, transfer, evaluation): Ray tasks wherever there is
room when Ray is up, else one after another in this process; the same retries, GPU option and progress lines.

Ray workers are reused across CPU tasks (imports are paid once per worker), not across GPU tasks (`worker_calls`);
a lost worker or node is retried `retries` times; an exception raised by the task itself is final (it would repeat).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence, TextIO

from pipeline.errors import task_error


class Progress:
    """One status line per event on stderr, `[stage] done/total, running, failed, queued, ETA`: printed when the
    counts change (or every `heartbeat` seconds), so a log file gets a line per event, not one per poll."""

    def __init__(self, stage: str, total: int, done: int = 0, stream: TextIO | None = None,
                 heartbeat: float = 60.0) -> None:
        self.stage, self.total, self.first_done, self.heartbeat = stage, total, done, heartbeat
        self.stream = stream or sys.stderr
        self.started = self.printed_at = time.monotonic()
        self.last: tuple[int, int, int] | None = None

    def show(self, done: int, running: int, failed: int) -> None:
        now = time.monotonic()
        if (done, running, failed) == self.last and now - self.printed_at < self.heartbeat:
            return
        queued = self.total - done - running - failed
        finished_here = done - self.first_done
        left = self.total - done - failed
        eta = f"ETA {(now - self.started) / finished_here * left:.0f}s" if finished_here else "ETA ?"
        print(f"[{self.stage}] {done}/{self.total} done, {running} running, {failed} failed, {queued} queued, {eta}",
              file=self.stream, flush=True)
        self.last, self.printed_at = (done, running, failed), now


@dataclass
class Outcome:
    results: dict[str, Any] = field(default_factory=dict)   # key -> what the task returned
    failed: dict[str, str] = field(default_factory=dict)    # key -> one-line reason


def run_tasks(stage: str, function: Callable[..., Any], calls: Mapping[str, Sequence[Any]], cpus: float = 1,
              gpus: float = 0, retries: int = 2, already_done: int = 0,
              on_result: Callable[[str, Any], None] | None = None,
              reason: Callable[[str, BaseException], str] = lambda key, error: task_error(error),
              poll_seconds: float = 2.0) -> Outcome:
    """function(*args) for every key → args of `calls`. `on_result(key, result)` runs on the driver as each task
    finishes (to write its part of a table at once); `reason` turns a task's exception into its failure line;
    `already_done` counts work skipped before (reused results) in the progress lines."""
    import ray

    outcome = Outcome()
    progress = Progress(stage, len(calls) + already_done, already_done)

    def finished(key: str, result: Any) -> None:
        outcome.results[key] = result
        if on_result is not None:
            on_result(key, result)

    if not calls:   # everything was done before: say so once
        progress.show(already_done, 0, 0)
        return outcome
    if not ray.is_initialized():
        for key, args in calls.items():
            progress.show(already_done + len(outcome.results), 1, len(outcome.failed))
            try:
                finished(key, function(*args))
            except Exception as error:  # noqa: BLE001 - a failed task is reported, the stage goes on
                outcome.failed[key] = reason(key, error)
        progress.show(already_done + len(outcome.results), 0, len(outcome.failed))
        return outcome

    from pipeline.cluster import check_fits

    check_fits(cpus, gpus)
    board = _progress_board()
    task = ray.remote(max_calls=worker_calls(gpus))(_announced).options(
        num_cpus=cpus, num_gpus=gpus, max_retries=retries, retry_exceptions=False, name=stage)
    pending = {task.remote(board, key, function, *args): key for key, args in calls.items()}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=poll_seconds)
        ended = [pending.pop(ref) for ref in ready]
        for ref, key in zip(ready, ended):
            try:
                finished(key, ray.get(ref))
            except Exception as error:  # noqa: BLE001 - a failed task is reported, the stage goes on
                outcome.failed[key] = reason(key, error)
        running = _running(board, ended)
        running = len(pending) if running is None else min(running, len(pending))
        progress.show(already_done + len(outcome.results), running, len(outcome.failed))
    progress.show(already_done + len(outcome.results), 0, len(outcome.failed))
    ray.kill(board)
    return outcome


def worker_calls(gpus: float) -> int:
    """Ray's max_calls: 0 (no limit) for CPU tasks; 1 for GPU tasks, since a reused worker's CUDA context stays on
    the GPU it first saw when Ray assigns its next task another one (only CUDA_VISIBLE_DEVICES changes), which
    would pile jobs onto one GPU. A fresh worker pays the imports again (seconds); one
    long-lived worker per GPU slot would not (benchmarks/worker_reuse.py measures both)."""
    return 1 if gpus > 0 else 0


def _announced(board, key: str, function: Callable[..., Any], *args: Any) -> Any:
    """The body of every Ray task: tell the board it runs (running vs queued in the progress line), then work.
    The driver tells the board which tasks ended: one message per task from the workers, not two."""
    board.started.remote(key)
    return function(*args)


def _progress_board():
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=0)
    class ProgressBoard:
        """Where tasks say that they started, so the driver can tell running tasks from queued ones."""

        def __init__(self) -> None:
            self.running: set[str] = set()

        def started(self, key: str) -> None:
            self.running.add(key)

        def ended(self, keys: list[str]) -> int:
            """Forget the tasks that ended; how many are running (a start that arrives after its end leaves a key
            behind: the driver caps the count at the tasks still pending)."""
            self.running.difference_update(keys)
            return len(self.running)

    # On the driver's node: a board on a lost worker node would take the progress display down with it.
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    return ProgressBoard.options(scheduling_strategy=here).remote()


def _running(board, ended: list[str]) -> int | None:
    """How many tasks say they are running, once those that `ended` are forgotten; None if the board is gone
    (progress shows fewer details then)."""
    import ray

    try:
        return ray.get(board.ended.remote(ended), timeout=10)
    except Exception:  # noqa: BLE001 - progress display only
        return None
