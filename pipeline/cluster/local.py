"""A two-node Ray cluster on one machine, on loopback: try a multi-node sweep on a laptop, and test one.

Both nodes run as `ray start --block` subprocesses, each in a session of its own, so every Ray process of the
cluster can be found (by session id, even once orphaned) and stopped by PID. `ray stop` is never used: it ends
every Ray process of the user.

    python -m pipeline.cluster.local --cpus 1          # prints the address; Ctrl-C stops both nodes
    python -m jobs.sweep cluster=ray cluster.address=127.0.0.1:<port>

    with RayCluster(tmp_path, num_cpus=1) as cluster:   # in Python (the tests, the benchmark)
        subprocess.run([sys.executable, "driver.py"], env=cluster.env, check=True)
        os.kill(cluster.worker_raylet_pid(), signal.SIGKILL)

Tasks can be pinned to a node with the custom resources `node_head` and `node_worker` (100 units each), e.g.
`resources={"node_worker": 1}`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, TypeVar

from pipeline.cluster import SYSTEM_CONFIG
from pipeline.cluster.auth import cluster_env
from pipeline.cluster.processes import Proc, all_procs, descendants, die_with_parent, still_running


T = TypeVar("T", bound="Service")


class Service:
    """A context manager over start() and stop(): a failed start still stops what it had started."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self: T) -> T:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


HEAD_RESOURCE = "node_head"
WORKER_RESOURCE = "node_worker"

# Polled in a child process: importing ray into the test process would make it
# a driver of whatever cluster it touched first.
_WAIT_FOR_NODES = """
import json, sys, time
import ray
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
while True:
    alive = [n for n in ray.nodes() if n["Alive"]]  # ray.nodes() keeps dead nodes
    if len(alive) >= int(sys.argv[2]):
        break
    time.sleep(0.2)
print("NODES", json.dumps([{"id": n["NodeID"], "resources": n["Resources"]} for n in alive]))
"""

# Health checks every second, 3 misses: a killed node is declared dead after a few seconds, not Ray's default
# quarter of a minute.
_FAST_HEALTH_CHECK = {
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}


class RayClusterError(RuntimeError):
    """The cluster did not come up (the message carries the node logs)."""


def _free_ports(count: int) -> list[int]:
    """`count` distinct ports free now: all held open at once, so that two calls cannot hand out the same one."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no log>"


class RayCluster(Service):
    """A head node and one worker node, started on enter, stopped by PID on exit."""

    def __init__(
        self,
        tmp: Path,
        num_cpus: int = 1,
        num_gpus: int = 0,
        fast_health_check: bool = True,
        startup_timeout: float = 90.0,  # a busy machine can take a good part of it
        auth: bool = True,
    ) -> None:
        self.tmp = Path(tmp)  # logs of the `ray start` processes go here
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.fast_health_check = fast_health_check
        self.startup_timeout = startup_timeout
        self.port = 0
        self._agent_ports: list[int] = []   # each node's dashboard agent
        self._temp_root: Path | None = None
        self._head: subprocess.Popen[bytes] | None = None
        self._worker: subprocess.Popen[bytes] | None = None
        self._logs: list[IO[bytes]] = []
        self._seen: set[Proc] = set()  # every cluster process met so far
        self._node_ids: dict[str, str] = {}
        self._auth = cluster_env(auth)   # a fresh token (pipeline.cluster.auth): only its env holds it

    # -- public API ---------------------------------------------------------

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """Environment for a subprocess (driver) that should join this cluster: its address and token."""
        env = self._base_env()
        env["RAY_ADDRESS"] = self.address
        return env

    def node_ids(self) -> dict[str, str]:
        """{"head": node id, "worker": node id} as seen at startup."""
        return dict(self._node_ids)

    def worker_raylet_pid(self) -> int:
        """PID of the worker node's raylet (kill it to simulate a lost node)."""
        assert self._worker is not None, "cluster not started"
        for proc in descendants(self._worker.pid, all_procs()):
            if proc.comm == "raylet":
                return proc.pid
        raise RayClusterError("worker raylet not found (already dead?)")

    def pids(self) -> set[int]:
        """Live PIDs of every process of this cluster."""
        return {p.pid for p in self._processes()}

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> None:
        self.tmp.mkdir(parents=True, exist_ok=True)
        # Unix socket paths are capped at 107 chars and live under
        # <temp-dir>/session_<date>_<pid>/sockets/: keep the root in /tmp.
        self._temp_root = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))
        # GCS, client server, dashboard, and each node's dashboard agent: distinct (Ray refuses a port twice)
        self.port, client_port, dashboard_port, *self._agent_ports = _free_ports(5)
        deadline = time.monotonic() + self.startup_timeout

        head_env = self._base_env()
        if self.fast_health_check:
            head_env.update(_FAST_HEALTH_CHECK)
        self._head = self._ray_start(
            "head",
            [
                "--head",
                f"--port={self.port}",
                "--include-dashboard=false",
                # Fixed defaults (10001, 8265) would clash between clusters of
                # parallel tests; the dashboard process is started even with
                # --include-dashboard=false and a dead one ends the node.
                f"--ray-client-server-port={client_port}",
                f"--dashboard-port={dashboard_port}",
                f"--system-config={json.dumps(SYSTEM_CONFIG)}",
            ],
            head_env,
        )
        # The worker's `ray start` gives up quickly if the GCS is not up yet.
        while not _port_open(self.port):
            self._check_alive(self._head, "head")
            if time.monotonic() > deadline:
                raise RayClusterError(f"GCS port {self.port} never opened\n{self._logs_text()}")
            time.sleep(0.1)
        self._worker = self._ray_start(
            "worker", [f"--address={self.address}"], self._base_env()
        )
        self._wait_for_nodes(deadline)

    def stop(self) -> None:
        """Stop every process of this cluster by PID and remove its temp dir."""
        # SIGTERM to `ray start --block` shuts its node down gracefully. Worker
        # first: a raylet that loses the GCS waits for it instead of exiting.
        for launcher in (self._worker, self._head):
            if launcher is None or launcher.poll() is not None:
                continue
            self._processes()  # remember the tree before it falls apart
            launcher.terminate()
            try:
                launcher.wait(timeout=15)
            except subprocess.TimeoutExpired:
                launcher.kill()
                launcher.wait()
        # Whatever outlived its launcher (orphans of a killed raylet, say).
        for proc in self._processes():
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        alive = self._processes()
        until = time.monotonic() + 10
        while alive and time.monotonic() < until:
            time.sleep(0.1)
            alive = self._processes()
        for log in self._logs:
            log.close()
        self._logs.clear()
        if self._temp_root is not None:
            shutil.rmtree(self._temp_root, ignore_errors=True)
        if alive:
            raise RayClusterError(f"Ray processes survived teardown: {[p.pid for p in alive]}")

    # -- internals ----------------------------------------------------------

    def _base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env.update(self._auth)   # the cluster's token: every node and every driver of `env`
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        # SIGTERM to a node would otherwise drain it for up to 30 s first.
        env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] = "0"
        return env

    def _ray_start(
        self, role: str, args: list[str], env: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        assert self._temp_root is not None
        ray_bin = Path(sys.executable).with_name("ray")
        temp_dir = self._temp_root / role[0]  # one per node: no shared log/socket names
        cmd = [
            str(ray_bin) if ray_bin.exists() else "ray",
            "start",
            *args,
            "--block",
            f"--temp-dir={temp_dir}",
            f"--num-cpus={self.num_cpus}",
            f"--num-gpus={self.num_gpus}",
            "--object-store-memory=200000000",  # default is ~30% of RAM per node
            # Default 52365 for both nodes of one machine would clash.
            f"--dashboard-agent-listen-port={self._agent_ports[role == 'worker']}",
            f"--resources={json.dumps({f'node_{role}': 100})}",
        ]
        log = open(self.tmp / f"ray-{role}.log", "wb")
        self._logs.append(log)
        # Own session per node: every process Ray forks below keeps its session
        # id, even when a killed raylet's workers are reparented to init.
        return subprocess.Popen(
            cmd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )

    def _wait_for_nodes(self, deadline: float) -> None:
        """Poll from a throwaway driver until both nodes are alive; retry when
        it fails (a driver started too early cannot find the head raylet) and
        give up early when a `ray start` dies."""
        attempts: list[str] = []
        while time.monotonic() < deadline:
            poll = subprocess.Popen(
                [sys.executable, "-c", _WAIT_FOR_NODES, self.address, "2"],
                env=self._base_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                while poll.poll() is None and time.monotonic() < deadline:
                    for launcher, role in ((self._head, "head"), (self._worker, "worker")):
                        assert launcher is not None
                        self._check_alive(launcher, role)
                    time.sleep(0.2)
            finally:
                if poll.poll() is None:
                    poll.kill()
                stdout, stderr = poll.communicate()
            for line in stdout.splitlines():
                if line.startswith("NODES "):
                    for node in json.loads(line[len("NODES ") :]):
                        for role in ("head", "worker"):
                            if f"node_{role}" in node["resources"]:
                                self._node_ids[role] = node["id"]
            if len(self._node_ids) == 2:
                return
            attempts.append(f"poll rc={poll.returncode}: {stderr.strip()[-1500:]}")
            time.sleep(0.5)
        raise RayClusterError(
            f"2 alive nodes not seen within {self.startup_timeout:.0f} s\n"
            + "\n".join(attempts[-2:])
            + f"\n{self._logs_text()}"
        )

    def _check_alive(self, launcher: subprocess.Popen[bytes], role: str) -> None:
        if launcher.poll() is not None:
            raise RayClusterError(
                f"`ray start` ({role}) exited with {launcher.returncode}\n{self._logs_text()}"
            )

    def _logs_text(self) -> str:
        return "\n".join(
            f"--- {path.name} ---\n{_tail(path)}" for path in sorted(self.tmp.glob("ray-*.log"))
        )

    def _processes(self) -> list[Proc]:
        """Live processes of this cluster: everything in the launchers' sessions
        (sid = launcher PID), their descendants, and whatever was seen before."""
        launchers = [p for p in (self._head, self._worker) if p is not None]
        sessions = {p.pid for p in launchers}
        procs = all_procs()
        found = {p for p in self._seen if still_running(p)}
        found.update(p for p in procs if p.sid in sessions)
        for launcher in launchers:
            # A reaped launcher's PID may belong to someone else by now.
            if launcher.poll() is None:
                found.update(descendants(launcher.pid, procs))
        found = {p for p in found if p.pid != os.getpid()}
        self._seen.update(found)
        return sorted(found, key=lambda p: p.pid)


def main(argv: list[str] | None = None) -> None:
    """Start the two nodes, print how to use them, and stop them on Ctrl-C (or SIGTERM)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pipeline.cluster.local",
                                     description="A two-node Ray cluster on this machine, on loopback.")
    parser.add_argument("--cpus", type=int, default=1, help="CPUs per node (default 1)")
    parser.add_argument("--gpus", type=int, default=0, help="logical GPUs per node (default 0)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    folder = Path(tempfile.mkdtemp(prefix="harness-ray-"))   # mode 0700: only this user reads the token file
    with RayCluster(folder, num_cpus=args.cpus, num_gpus=args.gpus) as cluster:
        join = f"python -m jobs.sweep cluster=ray cluster.address={cluster.address}"
        token = cluster.env.get("RAY_AUTH_TOKEN")
        if token:   # how other shells join: a file only this user can read, never the token on a command line
            token_file = folder / "auth_token"
            token_file.touch(mode=0o600)
            token_file.write_text(token)
            join = f"RAY_AUTH_TOKEN_PATH={token_file} {join}"
        print(f"two Ray nodes at {cluster.address} ({args.cpus} CPUs, {args.gpus} GPUs each); Ctrl-C stops them\n"
              f"  {join}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
