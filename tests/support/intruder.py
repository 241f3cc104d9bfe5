"""An outsider at a live run's Ray cluster: a process with its own HOME and no token joins the GCS and runs a task.

    python tests/support/intruder.py <host:port>    # prints one line: "joined: ..." or "refused: ..."

The tests also find a run's GCS address and token in /proc (the run's own processes, same user) and look for the
token in files and in every process's command line.
"""
from __future__ import annotations

import base64
import binascii
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve()


def intruder_env(home: Path) -> dict[str, str]:
    """This environment without any Ray token or address, with `home` as HOME (no ~/.ray/auth_token there). Ray
    tries the GCS once a second for 20 s by default; 3 tries are enough to be refused."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH") and k != "RAY_ADDRESS"}
    home.mkdir(parents=True, exist_ok=True)
    return {**env, "HOME": str(home), "RAY_gcs_server_port_wait_time_s": "3", "RAY_USAGE_STATS_ENABLED": "0"}


def intrude(address: str, home: Path, timeout: float = 120) -> str:
    """Run the intruder against `address`; its one line."""
    result = subprocess.run([sys.executable, str(HERE), address], env=intruder_env(home), capture_output=True,
                            text=True, timeout=timeout)
    lines = [line for line in result.stdout.splitlines() if line.startswith(("joined", "refused"))]
    return lines[-1] if lines else f"no verdict (exit {result.returncode}): {result.stderr[-500:]}"


def _cmdline(pid: str) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _pids() -> list[str]:
    return [p.name for p in Path("/proc").iterdir() if p.name.isdigit()]


def gcs_address(descendant_of: int) -> str | None:
    """host:port of the GCS started below process `descendant_of` (as it listens: the node's address), or None."""
    from pipeline.cluster.processes import all_procs, descendants

    for proc in descendants(descendant_of, all_procs()):
        if proc.comm == "gcs_server":
            args = dict(a.split("=", 1) for a in _cmdline(str(proc.pid)) if a.startswith("--") and "=" in a)
            port = args.get("--gcs_server_port", "0")
            if port == "0":   # ray.init lets it choose; it writes the port into its session folder
                written = sorted(Path(args.get("--log_dir", "/nonexistent")).parent.glob("gcs_server_port_*"))
                port = written[0].read_text().strip() if written else "0"
            if port not in ("", "0") and "--node-ip-address" in args:
                return f"{args['--node-ip-address']}:{port}"
    return None


def token_in_environ(pid: int) -> str | None:
    """RAY_AUTH_TOKEN in the environment process `pid` started with (ours: readable), or None."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    found = [e.split(b"=", 1)[1].decode() for e in environ if e.startswith(b"RAY_AUTH_TOKEN=")]
    return found[0] if found else None


def token_below(pid: int) -> str | None:
    """The token of the Ray processes started below `pid` (a driver puts it into its os.environ, which /proc does
    not show: its children start with it)."""
    from pipeline.cluster.processes import all_procs, descendants

    return next(filter(None, (token_in_environ(p.pid) for p in descendants(pid, all_procs()))), None)


def _decoded(args: list[str]) -> str:
    """The command line, plus the base64 values Ray passes (--config_list=...) decoded."""
    text = " ".join(args)
    for arg in args:
        value = arg.split("=", 1)[-1]
        try:
            text += " " + base64.b64decode(value, validate=True).decode(errors="replace")
        except (binascii.Error, ValueError):
            pass
    return text


def leaks(token: str, *folders: Path) -> list[str]:
    """Every file under `folders` (W&B's offline files included) and every process command line holding `token`."""
    found = [str(p) for folder in folders for p in folder.rglob("*")
             if p.is_file() and not p.is_symlink() and token.encode() in p.read_bytes()]
    found += [f"/proc/{pid}/cmdline" for pid in _pids() if token in _decoded(_cmdline(pid))]
    return found


def _main(address: str) -> None:
    import ray

    try:
        ray.init(address=address, log_to_driver=False, configure_logging=False, logging_level="ERROR")
    except BaseException as error:  # noqa: BLE001 - any failure to join is the verdict
        print(f"refused: {type(error).__name__}: {str(error).splitlines()[0][:200]}", flush=True)
        return

    @ray.remote(num_cpus=0)
    def whoami() -> str:
        import getpass
        import socket

        return f"{getpass.getuser()} (uid {os.getuid()}) on {socket.gethostname()}, HOME={os.environ.get('HOME')}"

    try:
        print(f"joined: ran a task in the cluster as {ray.get(whoami.remote(), timeout=60)}", flush=True)
    except BaseException as error:  # noqa: BLE001
        print(f"refused: joined but no task ran ({type(error).__name__}: {str(error).splitlines()[0][:200]})")


if __name__ == "__main__":
    _main(sys.argv[1])
