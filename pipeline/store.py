"""The job directory: what a finished job leaves on disk, written atomically and checked before it is trusted.

    <job_dir>/config.yaml    the resolved job config
    <job_dir>/model.pt       checkpoint: model weights + how to rebuild the model (loads with weights_only=True)
    <job_dir>/metrics.json   written last; its presence, schema and the checkpoint's hash mark the job complete
    <job_dir>/failure.json   written instead of metrics.json when the job failed (reason, traceback tail)
    <job_dir>/attempts.jsonl one line per attempt to run the job: number, start time, host, pid (appended)
    <job_dir>/last.ckpt      while the job trains: its last epoch's training state (resume after preemption)
    <job_dir>/job.log        what the job printed (stdout and stderr) when a sweep ran it on some node
    <job_dir>/.lock          held by the process that trains the job (pipeline.store.claim): who it is

Files follow the process's umask (0644 under umask 022), so a team can read a sweep on shared storage. A job or
sweep folder may have been written by someone else: its entries are opened without following a symlink, and a name
read from it never leads a path out of it (`inside`).

metrics.json schema (version 1):
    job_id, seed, status="complete", clean_error, clean_confidence, train_error, val_error,
    attack: {name, clip, craft_with}, curve: [{eps, error, confidence, confidence_wrong}, ...] (one row per ε),
    epochs, train_seconds, started (time.time() when run_job began), node, checkpoint: {file, sha256},
    device ("cpu", "cuda:0"), device_name, device_uuid, device_index (on CUDA: the GPU actually used),
    ray_gpu_ids (the GPUs Ray assigned; null outside Ray), cuda_visible_devices, tf32: {training, attack},
    versions: {python, torch, ...},
    code: {version, fingerprint, commit} (pipeline.provenance), attempt, resumed_from_epoch
"""
from __future__ import annotations

import errno
import filecmp
import functools
import hashlib
import json
import os
import shutil
import stat
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

from omegaconf import DictConfig, OmegaConf

# torch is imported by the two functions that use it: every task of the Ray launcher imports this module (job_log)
# and needs no torch.
if TYPE_CHECKING:
    import torch

SCHEMA = 1
CONFIG, CHECKPOINT, METRICS, FAILURE = "config.yaml", "model.pt", "metrics.json", "failure.json"
ATTEMPTS, LAST, LOG, LOCK = "attempts.jsonl", "last.ckpt", "job.log", ".lock"


@functools.cache
def file_mode() -> int:
    """0666 less the umask: what open() gives a new file (mkstemp's 0600 would hide results from the team)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: Path, write: Callable[[Path], None], mode: int | None = None,
                 unless_same: bool = False) -> bool:
    """Write through a temporary file in the same folder and rename it: readers never see a partial file (and a
    symlink at `path` is replaced, never written through). `mode`: the file's mode (default: file_mode()).
    `unless_same`: a regular file at `path` that holds the same bytes already is kept. Whether it wrote."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, file_mode() if mode is None else mode)
    os.close(fd)
    try:
        write(Path(tmp))
        if unless_same and path.is_file() and not path.is_symlink() and filecmp.cmp(tmp, path, shallow=False):
            return False
        os.replace(tmp, path)
        return True
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def open_entry(path: Path, mode: str = "rb") -> IO:
    """A regular file of a job or sweep folder, opened without following a symlink ("rb", "a+" or "ab": created
    when missing): a symlink, a FIFO or a device there is refused in one line naming it."""
    flags = {"rb": os.O_RDONLY, "a+": os.O_RDWR | os.O_CREAT | os.O_APPEND,
             "ab": os.O_WRONLY | os.O_CREAT | os.O_APPEND}[mode]
    try:   # O_NONBLOCK: opening a FIFO must not hang; it is refused below
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise not_regular(path, "a symlink") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise not_regular(path, "not a regular file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, mode)


def not_regular(path: Path, what: str) -> Exception:
    from pipeline.errors import ConfigError

    return ConfigError(f"{path} is refused: {what}; Harness follows nothing in a job or sweep folder out of it "
                       "(remove it, or the folder, and run again)")


def inside(folder: Path, name: str, key: str) -> Path:
    """folder/name, which must lie inside folder once symlinks and `..` are resolved: a name read from a folder
    (a job id, a model's file) never leads Harness out of it."""
    path = Path(folder) / name
    if not path.resolve().is_relative_to(Path(folder).resolve()):
        from pipeline.errors import ConfigError

        raise ConfigError(f"{key}={name} is refused: it leads out of {folder}")
    return path


def copy_regular(source: Path, target: Path) -> None:
    """Copy a regular file (a symlink or anything else is refused); the copy is never more readable than the
    source: someone else's 0600 file does not become 0644 in a shared folder."""
    with open_entry(source) as src:
        mode = file_mode() & os.fstat(src.fileno()).st_mode

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)

        atomic_write(target, write, mode)


def ensure_writable(directory: Path, key: str) -> Path:
    """Create the output folder and prove it writable, or refuse it in one line naming the config key."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # A probe of its own: array tasks starting together must not remove each other's.
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".writable.")
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        from pipeline.errors import ConfigError

        raise ConfigError(f"{key}={directory} is not writable ({error.strerror or error}); "
                          "choose a folder you can write") from None
    return directory


def write_if_changed(path: Path, text: str | Iterable[str]) -> bool:
    """Write `text` (a string, or its pieces: a large plan never exists as one string) atomically unless the file
    holds exactly it already; whether it wrote. Every array task of a sweep plans the same jobs: the first one writes
    the plan, the others only read it."""
    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as file:
            file.writelines([text] if isinstance(text, str) else text)

    return atomic_write(path, write, unless_same=True)


def job_path(sweep_dir: Path, job_id: str) -> Path:
    """Where a sweep keeps one job's directory (inside the sweep: a job folder that is a symlink out is refused)."""
    return inside(Path(sweep_dir), f"jobs/{job_id}", "job directory")


def write_json(path: Path, data: Any) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w") as f:   # streamed: a 10,000-job plan never exists as one string
            json.dump(data, f, indent=2, allow_nan=True)

    atomic_write(path, write)


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def failure_reason(directory: Path, error: BaseException) -> str:
    """Why a job failed: the failure record it wrote when it could, else the error its task ended with."""
    from pipeline.errors import task_error

    try:
        return read_json(directory / FAILURE)["reason"]
    except (OSError, ValueError, KeyError):
        return task_error(error)


def write_config(job_dir: Path, cfg: DictConfig) -> None:
    atomic_write(job_dir / CONFIG, lambda tmp: OmegaConf.save(cfg, tmp, resolve=True))


def read_config(job_dir: Path) -> dict[str, Any]:
    """The job's resolved config, as plain containers. Written resolved, it is read as written: an interpolation
    in it (which would read the environment or call a resolver) is refused (pipeline.trust)."""
    from pipeline import trust

    path = Path(job_dir) / CONFIG
    with open_entry(path) as f:
        config = OmegaConf.to_container(OmegaConf.load(f), resolve=False)
    trust.plain_values(config, path)
    return config


def sha256(path: Path) -> str:
    """The file's sha256, read once per process while its size and modification time stay the same (every stage
    checks every checkpoint of a sweep)."""
    stat = os.stat(path)
    return _sha256(str(Path(path).absolute()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=100_000)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _save_torch(state: dict[str, Any], path: Path) -> None:
    """torch.save through an open file: given a path, torch records the (random) temporary file name in the
    archive, and identical weights would hash differently."""
    import torch

    with open(path, "wb") as f:
        torch.save(state, f)


def save_checkpoint(job_dir: Path, model: torch.nn.Module, model_config: DictConfig | dict,
                    input_shape: Sequence[int], num_classes: int) -> dict[str, str]:
    """Save weights and the model's config (what rebuilds it: pipeline.models.build); returns the {file, sha256}
    entry for metrics.json."""
    spec = OmegaConf.to_container(model_config, resolve=True) if isinstance(model_config, DictConfig) else model_config
    state = {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "model_config": spec,
             "input_shape": list(input_shape), "num_classes": int(num_classes)}
    atomic_write(job_dir / CHECKPOINT, lambda tmp: _save_torch(state, tmp))
    return checkpoint_entry(job_dir)


def checkpoint_entry(job_dir: Path) -> dict[str, str]:
    return {"file": CHECKPOINT, "sha256": sha256(job_dir / CHECKPOINT)}


def write_metrics(job_dir: Path, metrics: dict[str, Any]) -> None:
    write_json(job_dir / METRICS, {"schema": SCHEMA, "status": "complete", **metrics})
    (job_dir / FAILURE).unlink(missing_ok=True)


def start_attempt(job_dir: Path, **details: Any) -> int:
    """Record an attempt to run the job (a retry, a resumed or forced rerun) and return its number, from 1. Counted
    and appended under a lock on the file: two processes starting at once get two numbers."""
    import fcntl

    job_dir.mkdir(parents=True, exist_ok=True)
    with open_entry(job_dir / ATTEMPTS, "a+") as f:   # one short line per append: no reader sees half of it
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        number = sum(1 for line in f if line.strip()) + 1
        f.write(json.dumps({"attempt": number, **owner(), **details}) + "\n")
        f.flush()
    return number


def owner() -> dict[str, Any]:
    """This process, as attempts.jsonl and the training lock name it."""
    import socket
    import time

    return {"started": time.time(), "host": socket.gethostname(), "pid": os.getpid()}


class Busy(RuntimeError):
    """Another process is training this job."""


@contextmanager
def claim(job_dir: Path) -> Iterator[None]:
    """Hold the job's training lock (<job_dir>/.lock) while the block runs, or raise Busy naming the process that
    holds it: two processes never train one job (a resubmitted array task, a retry of a task still running). An
    flock, so a process that dies (preemption, a lost node) releases it; on NFS Linux maps it to a POSIX lock."""
    import fcntl

    job_dir.mkdir(parents=True, exist_ok=True)
    with open_entry(job_dir / LOCK, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise Busy(f"job {job_dir.name} is being trained by another process ({f.read().strip() or 'unknown'})"
                       ) from None
        f.truncate(0)
        f.write(json.dumps(owner()))
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def read_attempts(job_dir: Path) -> list[dict[str, Any]]:
    try:
        with open_entry(Path(job_dir) / ATTEMPTS) as f:
            lines = f.read().decode().splitlines()
    except OSError:
        return []
    return [json.loads(line) for line in lines if line.strip()]


def write_failure(job_dir: Path, reason: str, details: str = "") -> None:
    write_json(job_dir / FAILURE, {"status": "failed", "reason": reason, "details": details})


def read_metrics(job_dir: Path) -> dict[str, Any] | None:
    """The job's metrics if the job is complete and its checkpoint intact; None otherwise (recompute it)."""
    job_dir = Path(job_dir)
    try:
        metrics = read_json(job_dir / METRICS)
        checkpoint = metrics["checkpoint"]
        if metrics.get("schema") != SCHEMA or metrics.get("status") != "complete" or not metrics.get("curve"):
            return None
        if sha256(job_dir / checkpoint["file"]) != checkpoint["sha256"]:
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return metrics


def is_complete(job_dir: Path) -> bool:
    return read_metrics(job_dir) is not None


@contextmanager
def job_log(job_dir: Path) -> Iterator[None]:
    """This process's stdout and stderr (Python's and native code's) appended to <job_dir>/job.log while the block
    runs: a job that failed on another node can be read without that node."""
    job_dir.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with open_entry(job_dir / LOG, "ab") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        os.close(saved[0])
        os.close(saved[1])


def load_model(job_dir: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The trained model of a job directory (the user's own class too), in eval mode: [0, 1] images in, logits
    out. A path in the model config (a pretrained job's copy of its file) is relative to the job directory."""
    import torch

    from pipeline.models.build import build_model

    checkpoint = Path(job_dir) / CHECKPOINT
    with open_entry(checkpoint) as f:
        state = torch.load(f, map_location=device, weights_only=True)
    spec = dict(state["model_config"])
    if isinstance(spec.get("path"), str):   # a pretrained job's copy of its file, inside the job directory
        spec["path"] = str(inside(Path(job_dir), spec["path"], f"{checkpoint}: model_config.path"))
    # The class it names is checked before it is built: a model.pt may have been written by someone else.
    model = build_model(spec, state["input_shape"], state["num_classes"], origin=checkpoint)
    model.load_state_dict(state["model"])
    return model.to(device).eval()
