"""A throwaway single-node SLURM cluster for integration tests.

Brings up munged, slurmctld and slurmd by hand (no systemd here) from a fresh
state directory, with two fake GPUs as gres, and tears everything down by PID.
Nothing under /etc is edited: the daemons get ``-f <slurm.conf>`` and clients
find the cluster through ``SLURM_CONF`` (see ``SlurmCluster.env``).

Only the standard library is used, so the module imports anywhere; call
``slurm_available()`` first to decide whether to skip.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pipeline.cluster.local import Service
from tests.support import apt

_SEARCH_PATH, _which = apt.SEARCH_PATH, apt.which   # sbin dirs included: the daemons live there
_PACKAGES = ["slurm-wlm", "munge"]
# Unix socket paths are limited to 107 bytes; slurmd puts step sockets in its
# spool dir, so long state dirs get their sockets in a short dir under /tmp.
_MAX_SOCKET_DIR_LEN = 60
# Job states after which a job (or array task) will not change any more.
_TERMINAL_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "TIMEOUT",
    }
)


def _installed() -> bool:
    return all(_which(b) for b in ("slurmctld", "slurmd", "sbatch", "munged"))


def slurm_available() -> str | None:
    """None if a cluster can be brought up here, else a one-line skip reason."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "SLURM tests need root (daemons, mknod, apt-get)"
    if not Path("/etc/debian_version").exists():
        return "SLURM tests need Debian (slurm-wlm and munge from apt)"
    return None if _installed() else apt.cannot_install(_PACKAGES)


def install_slurm(timeout: float = 900) -> None:
    """apt-get install slurm-wlm and munge unless slurmctld is already there."""
    apt.install(_PACKAGES, _installed, timeout)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mem_total_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 4096


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"<{exc}>"


class SlurmCluster(Service):
    """A one-node cluster: ``with SlurmCluster(tmp_path) as cluster: ...``.

    Each instance uses a fresh state dir under ``workdir`` (an old DRAIN
    reason would otherwise survive), its own munge key and socket, and free
    TCP ports, so clusters never see each other's state.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        gpus: int = 2,
        cpus: int | None = None,
        up_timeout: float = 60.0,
    ) -> None:
        self.workdir = Path(workdir)
        self.gpus = gpus
        # Two CPUs at least so that `srun -n 2` fits even on a 1-core box.
        self.cpus = cpus if cpus is not None else max(2, os.cpu_count() or 2)
        self.up_timeout = up_timeout
        self.nodename = socket.gethostname().split(".")[0]
        self.partition = "debug"
        self.state_dir: Path | None = None
        self.conf_path: Path | None = None
        self._sock_dir: Path | None = None
        self._owns_sock_dir = False
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._env: dict[str, str] = {}

    # -- lifecycle -------------------------------------------------------

    def start(self) -> None:
        install_slurm()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.state_dir = Path(tempfile.mkdtemp(prefix="slurm-", dir=self.workdir))
        # 0755 so that jobs of non-root users can reach the munge socket.
        self.state_dir.chmod(0o755)
        if len(str(self.state_dir)) <= _MAX_SOCKET_DIR_LEN:
            self._sock_dir = self.state_dir / "run"
            self._sock_dir.mkdir()
        else:
            self._sock_dir = Path(tempfile.mkdtemp(prefix="slurm-"))
            self._owns_sock_dir = True
        self._sock_dir.chmod(0o755)
        for sub in ("ctld", "dev", "munge"):
            (self.state_dir / sub).mkdir()
        (self._sock_dir / "slurmd").mkdir()
        (self.state_dir / "munge").chmod(0o700)

        self._make_fake_gpus()
        self.conf_path = self._write_configs()
        self._env = self._client_env()

        self._start_munged()
        self._spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf_path)])
        self._wait_for(self._ctld_answers, "slurmctld to answer")
        self._spawn("slurmd", ["slurmd", "-D", "-f", str(self.conf_path)])
        self._wait_for(self._node_idle, f"node {self.nodename} to be idle in sinfo")
        self._check_gres()

    def stop(self) -> None:
        """Cancel jobs, shut the daemons down, and kill any that remain."""
        ctld = self._procs.get("slurmctld")
        asked = ctld is not None and ctld.poll() is None
        if asked:
            self._cancel_all_jobs()
            # Stops slurmctld and slurmd cleanly; signals are the fallback.
            asked = self._run(["scontrol", "shutdown"], check=False,
                              timeout=15).returncode == 0
        for name in ("slurmd", "slurmctld", "munged"):  # munged last: slurm needs it
            proc = self._procs.pop(name, None)
            if proc is not None:
                self._terminate(proc, grace=10.0 if asked and name != "munged" else 0)
        if self._owns_sock_dir and self._sock_dir is not None:
            shutil.rmtree(self._sock_dir, ignore_errors=True)
            self._owns_sock_dir = False

    @property
    def pids(self) -> dict[str, int]:
        """PIDs of the daemons this cluster started (and has not stopped)."""
        return {name: p.pid for name, p in self._procs.items()}

    # -- client API ------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        """Environment for subprocesses (sbatch, squeue, ...) of this cluster."""
        return dict(self._env)

    def sbatch(self, args: list[str], cwd: Path | str | None = None) -> int:
        """Submit with ``sbatch --parsable <args>`` and return the job id."""
        res = self._run(["sbatch", "--parsable", *args], cwd=cwd)
        # --parsable prints "<jobid>[;<cluster>]".
        return int(res.stdout.strip().split(";")[0])

    def job_states(self, job_id: int | str) -> list[str]:
        """JobState of each record of the job (one per array task); [] if unknown."""
        res = self._run(["scontrol", "-o", "show", "job", str(job_id)], check=False)
        if res.returncode != 0:
            return []  # "Invalid job id": never existed or older than MinJobAge
        return re.findall(r"\bJobState=(\S+)", res.stdout)

    def job_state(self, job_id: int | str) -> str | None:
        """One state for the whole job: the first unfinished task's state while
        any runs, then COMPLETED if every task completed, else the first
        failure (FAILED, CANCELLED, ...). None if SLURM does not know the job."""
        states = self.job_states(job_id)
        if not states:
            return None
        pending = [s for s in states if s not in _TERMINAL_STATES]
        if pending:
            return pending[0]
        failed = [s for s in states if s != "COMPLETED"]
        return failed[0] if failed else "COMPLETED"

    def wait(self, job_id: int | str, timeout: float = 120.0) -> str:
        """Poll until the job (all array tasks) has finished; return its state."""
        deadline = time.monotonic() + timeout
        state: str | None = None
        while time.monotonic() < deadline:
            state = self.job_state(job_id)
            if state is None:
                raise RuntimeError(f"job {job_id} is unknown to slurmctld")
            if state in _TERMINAL_STATES:
                return state
            time.sleep(0.25)
        raise TimeoutError(
            f"job {job_id} still {state} after {timeout:.0f} s\n{self.diagnostics()}"
        )

    def diagnostics(self) -> str:
        """squeue, sinfo and daemon log tails, for error messages."""
        parts = []
        for cmd in (["squeue"], ["sinfo", "-R"], ["sinfo", "-N", "-l"]):
            res = self._run(cmd, check=False, timeout=10)
            parts.append(f"$ {' '.join(cmd)}\n{res.stdout}{res.stderr}")
        parts.append(self._log_tails(["slurmctld", "slurmd", "munged"]))
        return "\n".join(parts)

    # -- internals -------------------------------------------------------

    def _make_fake_gpus(self) -> None:
        # gres File= must name character devices: a count-only gpu gres drains
        # the node, and plain files are dropped (see _check_gres). 195 is the
        # NVIDIA major number; nothing opens these, slurm only stats them.
        assert self.state_dir is not None
        for i in range(self.gpus):
            os.mknod(self.state_dir / "dev" / f"nvidia{i}", 0o666 | 0o020000,
                     os.makedev(195, i))

    def _write_configs(self) -> Path:
        assert self.state_dir is not None and self._sock_dir is not None
        sd = self.state_dir
        mem = max(1024, _mem_total_mb() - 2048)  # leave the OS some room
        gres = f" Gres=gpu:{self.gpus}" if self.gpus else ""
        conf = f"""\
ClusterName=harness
SlurmctldHost={self.nodename}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self._sock_dir / 'munge.socket'}
SlurmUser=root
SlurmdUser=root
StateSaveLocation={sd / 'ctld'}
SlurmdSpoolDir={self._sock_dir / 'slurmd'}
SlurmctldPidFile={sd / 'slurmctld.pid'}
SlurmdPidFile={sd / 'slurmd.pid'}
SlurmctldLogFile={sd / 'slurmctld.log'}
SlurmdLogFile={sd / 'slurmd.log'}
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without it a job gets the whole node's memory, so jobs run one at a time.
DefMemPerCPU={mem // self.cpus}
GresTypes=gpu
ReturnToService=2
# Trust the CPU/memory numbers below instead of draining on a mismatch.
SlurmdParameters=config_overrides
# Start jobs about 1 s after submission instead of waiting for a cycle.
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
# Keep finished jobs visible to `scontrol show job` for 10 minutes.
MinJobAge=600
NodeName={self.nodename} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={mem}{gres} State=UNKNOWN
PartitionName={self.partition} Nodes={self.nodename} Default=YES MaxTime=INFINITE State=UP
"""
        (sd / "slurm.conf").write_text(conf)
        # gres.conf is looked up next to slurm.conf. No cgroup.conf: with
        # proctrack/linuxproc and task/none nothing reads it.
        gres_conf = "AutoDetect=off\n"
        if self.gpus:
            last = self.gpus - 1
            gres_conf += f"Name=gpu File={sd / 'dev'}/nvidia[0-{last}]\n"
        (sd / "gres.conf").write_text(gres_conf)
        return sd / "slurm.conf"

    def _client_env(self) -> dict[str, str]:
        # Drop SLURM_* inherited from an outer job so clients talk to us only.
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        env["SLURM_CONF"] = str(self.conf_path)
        env["PATH"] = _SEARCH_PATH
        return env

    def _start_munged(self) -> None:
        # A private key and socket: independent of /etc/munge and of any
        # system munged, and nothing to clean up outside the state dir.
        # --force: start even if a check on path permissions would refuse
        # (e.g. a group-writable workdir). In --foreground munged logs to
        # stderr, i.e. munged.out.
        assert self.state_dir is not None and self._sock_dir is not None
        mdir = self.state_dir / "munge"
        key = mdir / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o600)
        self._spawn(
            "munged",
            [
                "munged", "--foreground", "--force",
                f"--key-file={key}",
                f"--socket={self._sock_dir / 'munge.socket'}",
                f"--pid-file={mdir / 'munged.pid'}",
                f"--seed-file={mdir / 'munged.seed'}",
                "--num-threads=2",
            ],
        )
        sock = self._sock_dir / "munge.socket"
        self._wait_for(sock.exists, "munged to create its socket", timeout=15)

    def _spawn(self, name: str, argv: list[str]) -> None:
        assert self.state_dir is not None
        path = _which(argv[0])
        if path is None:
            raise RuntimeError(f"{argv[0]} not found")
        out = open(self.state_dir / f"{name}.out", "wb")
        # Foreground (-D/-F) so the PID we hold is the daemon itself; own
        # session so a Ctrl-C in the test runner does not hit it mid-teardown.
        self._procs[name] = subprocess.Popen(
            [path, *argv[1:]], stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=self._env, start_new_session=True,
        )
        out.close()

    def _run(
        self,
        cmd: list[str],
        *,
        cwd: Path | str | None = None,
        check: bool = True,
        timeout: float = 30,
    ) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(cmd, cwd=cwd, env=self._env or self._client_env(),
                             capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd)} exited {res.returncode}: {res.stderr.strip()}"
            )
        return res

    def _ctld_answers(self) -> bool:
        return self._run(["scontrol", "ping"], check=False, timeout=10).returncode == 0

    def _node_idle(self) -> bool:
        res = self._run(["sinfo", "-h", "-N", "-o", "%T"], check=False, timeout=10)
        state = res.stdout.strip()
        if "drain" in state:  # will not recover by itself: fail now
            raise RuntimeError(f"node is {state}\n{self.diagnostics()}")
        return state == "idle"

    def _check_gres(self) -> None:
        # A bad gres File= (e.g. a plain file) does not drain the node: slurmd
        # only logs it, and GPU jobs then run with CUDA_VISIBLE_DEVICES empty.
        assert self.state_dir is not None
        log = (self.state_dir / "slurmd.log").read_text(errors="replace")
        bad = [line for line in log.splitlines() if "fix your gres.conf" in line]
        if bad:
            raise RuntimeError("slurmd rejected gres.conf:\n" + "\n".join(bad))

    def _wait_for(
        self, ready: Callable[[], bool], what: str, timeout: float | None = None
    ) -> None:
        deadline = time.monotonic() + (timeout or self.up_timeout)
        while time.monotonic() < deadline:
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with {proc.returncode} while waiting for "
                        f"{what}\n{self._log_tails(list(self._procs))}"
                    )
            if ready():
                return
            time.sleep(0.2)
        raise TimeoutError(f"timed out waiting for {what}\n{self.diagnostics()}")

    def _log_tails(self, names: list[str]) -> str:
        # The timestamped log file if the daemon got that far, else its
        # stderr (config errors, and munged, which logs there in --foreground).
        if self.state_dir is None:
            return ""
        parts = []
        for name in names:
            log = self.state_dir / f"{name}.log"
            if not (log.exists() and log.stat().st_size):
                log = self.state_dir / f"{name}.out"
            if log.exists():
                parts.append(f"--- {log} (tail) ---\n{_tail(log)}")
        return "\n".join(parts)

    def _cancel_all_jobs(self) -> None:
        # Running steps would outlive slurmd as orphaned slurmstepd processes.
        res = self._run(["squeue", "-h", "-o", "%A"], check=False, timeout=10)
        ids = sorted(set(res.stdout.split()))
        if not ids:
            return
        self._run(["scancel", *ids], check=False, timeout=10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            res = self._run(["squeue", "-h", "-o", "%A"], check=False, timeout=10)
            if res.returncode != 0 or not res.stdout.strip():
                return
            time.sleep(0.25)

    @staticmethod
    def _terminate(proc: subprocess.Popen[bytes], grace: float) -> None:
        """Wait `grace` s for an exit already asked for, then TERM, then KILL."""
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            pass
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if proc.poll() is not None:
                return
            proc.send_signal(sig)
            try:
                proc.wait(timeout=10)
                return
            except subprocess.TimeoutExpired:
                continue
