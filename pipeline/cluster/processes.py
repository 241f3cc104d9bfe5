"""The processes of a local cluster, read from /proc: a process and its start time (which survives PID reuse),
its descendants, and a pre-exec hook that ends a child with its parent."""
from __future__ import annotations

import ctypes
import os
import signal
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Proc:
    """A process as read from /proc; (pid, start) survives PID reuse."""

    pid: int
    ppid: int
    sid: int
    start: int  # clock ticks after boot
    comm: str
    cmdline: str


def die_with_parent() -> None:
    """preexec_fn: SIGTERM this child when the test process dies, so a test run
    killed hard (pytest-timeout's thread method, say) does not leave a cluster
    behind. Linux ties this to the spawning thread: start clusters from the
    main thread or one that outlives them."""
    PRCTL(1, signal.SIGTERM, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG


# Looked up before fork: the child of a threaded parent should not load libraries.
PRCTL = ctypes.CDLL(None, use_errno=True).prctl


def read_proc(pid: int) -> Proc | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm is in parentheses and may itself contain spaces or ')'.
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):  # zombie or dead: nothing left to stop
        return None
    return Proc(
        pid=pid,
        ppid=int(fields[1]),
        sid=int(fields[3]),
        start=int(fields[19]),
        comm=comm,
        cmdline=cmdline.replace(b"\0", b" ").decode(errors="replace"),
    )


def all_procs() -> list[Proc]:
    procs = (read_proc(int(d)) for d in os.listdir("/proc") if d.isdigit())
    return [p for p in procs if p is not None]


def still_running(proc: Proc) -> bool:
    now = read_proc(proc.pid)
    return now is not None and now.start == proc.start


def descendants(pid: int, procs: list[Proc]) -> list[Proc]:
    children: dict[int, list[Proc]] = {}
    for proc in procs:
        children.setdefault(proc.ppid, []).append(proc)
    out: list[Proc] = []
    todo = [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        out.extend(kids)
        todo.extend(k.pid for k in kids)
    return out
