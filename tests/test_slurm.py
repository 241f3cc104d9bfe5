"""SLURM: slurm/sweep.sbatch (Ray over the allocation), slurm/array.sbatch (one job per array task) and Hydra's
submitit launcher (conf/hydra/launcher/slurm.yaml), submitted to a real single-node slurmctld with two fake GPUs."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from glob import glob
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from tests.support.intruder import HERE as INTRUDER, intruder_env, leaks, token_in_environ
from tests.support.slurm_cluster import SlurmCluster, slurm_available

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.slurm]

# Six cheap jobs (softmax, 2 epochs on 600 digits, 2 regularizers x 3 seeds); no example images, transfer matrix
# or extra evaluations (tests/test_sweep.py covers those). The note is a value with spaces, `;`, `$( )` and
# backquotes: a shell that evaluated the arguments would run the command in it.
GRID = ["experiment=smoke", "sweep.grid.model=softmax", "sweep.grid.regularizer=none,adversarial",
        "sweep.grid.seed=range(3)", "report.images=0", "transfer.enabled=false", "evaluation.enabled=false"]


def injected(marker: Path) -> str:
    return f"+note='a; touch {marker} $(touch {marker}) `touch {marker}`'"


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    reason = slurm_available()
    if reason:
        pytest.skip(reason)
    with SlurmCluster(tmp_path_factory.mktemp("slurm")) as cluster:
        daemons = cluster.pids
        yield cluster
    for name, pid in daemons.items():   # the context stopped every daemon it started
        assert not Path(f"/proc/{pid}").exists() or _state(pid) == "Z", f"{name} (pid {pid}) survived teardown"


@pytest.fixture(scope="module")
def env(slurm) -> dict[str, str]:
    """What the batch scripts see (sbatch exports the submitter's environment)."""
    return {**slurm.env, "HARNESS_PYTHON": sys.executable, "WANDB_MODE": "offline",
            "HARNESS_RAY_ARGS": "--object-store-memory=200000000",
            "HARNESS_REQUIRE_CUDA": "0"}   # fake GPUs: CUDA sees none, jobs run on the CPU


def sbatch(slurm: SlurmCluster, env: dict[str, str], args: list[str]) -> int:
    res = subprocess.run(["sbatch", "--parsable", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=30)
    assert res.returncode == 0, res.stderr
    return int(res.stdout.strip().split(";")[0])


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"


def job_processes(job_id: int, timeout: float = 15.0) -> list[str]:
    """Live processes started inside SLURM job `job_id` (or array `job_id`), found by their environment: Ray's
    workers rename themselves (ray::IDLE), but keep SLURM_JOB_ID. Waits up to `timeout` for them to go."""
    needles = (f"SLURM_JOB_ID={job_id}\0".encode(), f"SLURM_ARRAY_JOB_ID={job_id}\0".encode())
    deadline = time.monotonic() + timeout
    while True:
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                environ = (proc / "environ").read_bytes()
                if any(needle in environ for needle in needles) and _state(int(proc.name)) not in ("Z", "gone"):
                    cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    found.append(f"{proc.name}: {cmdline[:150]}")
            except OSError:
                continue
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def sync_targets(line: str) -> list[str]:
    """The offline run directories a printed `wandb sync <globs>` line names."""
    assert line.startswith("wandb sync "), line
    return sorted(p for pattern in line.split()[2:] for p in glob(pattern))


def metrics(sweep_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("jobs/*/metrics.json"))]


# --- slurm/sweep.sbatch --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sweep(slurm, env, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    marker = out / "pwned"
    args = [*GRID, f"dir={out / 'smoke'}", "resources.gpu=1", injected(marker)]
    started = time.monotonic()
    job = sbatch(slurm, {**env, "HARNESS_RAY_HEAD_IP": "127.0.0.1"},
                 ["--gres=gpu:2", "--cpus-per-task=2", "--time=15", f"--output={out}/slurm-%j.out",
                  "slurm/sweep.sbatch", *args])
    outsider = step_without_the_token(slurm, job, out / f"slurm-{job}.out", out / "outsider")
    state = slurm.wait(job, timeout=600)
    log = (out / f"slurm-{job}.out").read_text()
    print(f"sweep.sbatch: {state} in {time.monotonic() - started:.0f}s")
    outsider.leaks = leaks(outsider.token, out) if outsider.token else []
    return SimpleNamespace(job=job, state=state, log=log, dir=out / "smoke", marker=marker,
                           leftovers=job_processes(job), outsider=outsider)


def step_without_the_token(slurm: SlurmCluster, job: int, log_file: Path, home: Path) -> SimpleNamespace:
    """Once the allocation's Ray is up: the intruder as a step of the same allocation, started without the token
    (its own HOME), at the head's address; and the allocation's token, read from a Ray process's environment."""
    deadline = time.monotonic() + 300
    while "Ray cluster up" not in (log := log_file.read_text() if log_file.exists() else ""):
        assert slurm.job_state(job) in ("PENDING", "RUNNING"), log
        assert time.monotonic() < deadline, f"the sweep's Ray did not come up\n{slurm.diagnostics()}"
        time.sleep(0.5)
    address = re.search(r"Ray head at (\S+?),", log).group(1)
    token = next(filter(None, map(token_in_environ, slurm_step_pids(job))), None)
    env = intruder_env(home) | {key: slurm.env[key] for key in ("SLURM_CONF", "PATH")}
    step = subprocess.run(["srun", f"--jobid={job}", "--overlap", "--ntasks=1", "--gres=none", sys.executable,
                           str(INTRUDER), address], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    verdict = next((line for line in step.stdout.splitlines() if line.startswith(("joined", "refused"))),
                   f"no verdict (exit {step.returncode}): {step.stderr[-800:]}")
    print(f"sweep.sbatch ({address}): a step without the token: intruder {verdict}")
    return SimpleNamespace(verdict=verdict, token=token, still_running=slurm.job_state(job) == "RUNNING", leaks=[])


def slurm_step_pids(job: int) -> list[int]:
    """PIDs of the processes SLURM started for `job` (their parents of Ray's processes)."""
    needle = f"SLURM_JOB_ID={job}\0".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and needle in (proc / "environ").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def test_sweep_trains_every_job_on_ray_and_writes_the_report(sweep):
    assert sweep.state == "COMPLETED", sweep.log[-3000:]
    assert "[sweep] trained 6, reused 0, failed 0" in sweep.log
    assert len(metrics(sweep.dir)) == 6
    assert (sweep.dir / "report.html").exists()


def test_sweep_ray_gets_the_allocations_gpus_and_jobs_get_distinct_ones(sweep):
    # Ray's resources come from SLURM (2 CPUs, gres gpu:2), not from the machine (no GPU here).
    assert "[sweep.sbatch] Ray cluster up: 1 node(s), 2 CPUs, 2 GPUs" in sweep.log
    assert "Ray head at 127.0.0.1:" in sweep.log                         # HARNESS_RAY_HEAD_IP
    jobs = metrics(sweep.dir)
    assert all(m.get("ray_node_id") for m in jobs)                     # trained by Ray tasks
    devices = [m["cuda_visible_devices"] for m in jobs]
    assert devices and all(device in ("0", "1") for device in devices), devices   # one of the two GPUs each
    assert all(m["ray_gpu_ids"] == [m["cuda_visible_devices"]] and m["device"] == "cpu" for m in jobs)   # fake GPUs


def test_sweep_refuses_gpus_that_cuda_cannot_see(slurm, env, tmp_path):
    """Without HARNESS_REQUIRE_CUDA=0 the fake GPUs fail the job before the sweep starts: no silent CPU run."""
    strict = {k: v for k, v in env.items() if k != "HARNESS_REQUIRE_CUDA"}
    job = sbatch(slurm, strict, ["--gres=gpu:2", "--cpus-per-task=2", "--time=5", f"--output={tmp_path}/slurm-%j.out",
                                 "slurm/sweep.sbatch", *GRID, f"dir={tmp_path / 'smoke'}", "resources.gpu=1"])
    state = slurm.wait(job, timeout=300)
    log = (tmp_path / f"slurm-{job}.out").read_text()
    assert state == "FAILED", log[-3000:]
    assert "error: SLURM gave" in log and "2 GPU(s) but CUDA sees 0" in log, log[-3000:]
    assert not (tmp_path / "smoke").exists()                            # the sweep never started


def test_sweep_log_ends_with_the_wandb_sync_command(sweep):
    runs = sync_targets(last_line(sweep.log))
    job_runs = [r for r in runs if "/jobs/" in r]
    assert len(job_runs) == 6 and len(runs) > 6, runs                   # 6 jobs + the summary stage run


def test_sweep_ray_refuses_a_step_without_the_token_and_keeps_the_token_out_of_files(sweep):
    outsider = sweep.outsider
    assert outsider.still_running, "the sweep ended before the outsider was done: the test proves nothing"
    assert outsider.verdict.startswith("refused"), outsider.verdict
    assert outsider.token and re.fullmatch(r"[0-9a-f]{64}", outsider.token), "the allocation has no fresh token"
    assert outsider.leaks == []                        # the SLURM log, the sweep folder (W&B offline files), ps
    assert "Ray token authentication is off" not in sweep.log


def test_sweep_stops_its_ray_cluster(sweep):
    assert "[sweep.sbatch] stopping Ray on 1 node(s)" in sweep.log
    assert sweep.leftovers == [], sweep.leftovers
    temps = re.findall(r"Ray temp dir (\S+)", sweep.log)                     # private, named in the log
    assert temps and not any(Path(tmp).exists() for tmp in temps)


def test_sweep_arguments_are_passed_verbatim_and_never_run(sweep):
    assert not sweep.marker.exists()
    saved = yaml.safe_load((sweep.dir / "sweep.yaml").read_text())
    assert saved["note"] == f"a; touch {sweep.marker} $(touch {sweep.marker}) `touch {sweep.marker}`"


def test_sweep_gives_up_when_ray_is_not_up_within_harness_ray_timeout(slurm, env, tmp_path):
    """HARNESS_RAY_TIMEOUT=0: Ray's head cannot have opened its port when the script first looks (with 1 s it
    sometimes did, on an idle machine), so the job fails with the reason and leaves nothing behind."""
    job = sbatch(slurm, {**env, "HARNESS_RAY_TIMEOUT": "0"}, ["--cpus-per-task=1", "--time=5",
                 f"--output={tmp_path}/slurm-%j.out", "slurm/sweep.sbatch", *GRID, f"dir={tmp_path / 'never'}"])
    assert slurm.wait(job, timeout=120) == "FAILED"
    log = (tmp_path / f"slurm-{job}.out").read_text()
    assert re.search(r"error: the Ray head on \S+ did not open \S+ within 0s", log), log[-2000:]
    assert not (tmp_path / "never").exists()                           # no sweep started
    assert job_processes(job) == []


def test_sweep_stops_cleanly_on_the_time_limit_signal(slurm, env, tmp_path):
    """`--signal=B:TERM@120` sends TERM to the batch shell before the time limit: `scancel --batch --signal=TERM`
    does the same now. The driver and Ray stop, the log says how to resume, nothing of the job is left."""
    args = ["experiment=smoke", "sweep.grid.model=maxout", "sweep.grid.regularizer=adversarial",
            "sweep.overrides=['trainer.max_epochs=500']", f"dir={tmp_path / 'long'}"]
    job = sbatch(slurm, env, ["--cpus-per-task=2", "--time=15", f"--output={tmp_path}/slurm-%j.out",
                              "slurm/sweep.sbatch", *args])
    log_file = tmp_path / f"slurm-{job}.out"
    deadline = time.monotonic() + 240
    while " jobs planned in " not in (log_file.read_text() if log_file.exists() else ""):   # the driver is up
        assert slurm.job_state(job) in ("PENDING", "RUNNING"), log_file.read_text() if log_file.exists() else ""
        assert time.monotonic() < deadline, f"the sweep did not start\n{slurm.diagnostics()}"
        time.sleep(0.5)
    subprocess.run(["scancel", "--batch", "--signal=TERM", str(job)], env=slurm.env, check=True, timeout=30)
    slurm.wait(job, timeout=120)
    log = log_file.read_text()
    assert "[sweep.sbatch] received SIGTERM: stopping" in log
    assert "stopping the sweep driver" in log and "stopping Ray on 1 node(s)" in log
    assert "submit the same command again" in log
    assert "[sweep] trained" not in log                                 # stopped mid-training
    assert job_processes(job) == []
    temps = re.findall(r"Ray temp dir (\S+)", log)                     # private, named in the log
    assert temps and not any(Path(tmp).exists() for tmp in temps)


# --- slurm/array.sbatch --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def array(slurm, env, tmp_path_factory):
    out = tmp_path_factory.mktemp("array")
    marker = out / "pwned"
    args = [*GRID, f"dir={out / 'smoke'}", injected(marker)]
    # HARNESS_VENV instead of HARNESS_PYTHON, with no python of the venv on PATH: the tasks find it by activating
    venv_bin = str(Path(sys.prefix) / "bin")
    tasks_env = {**{k: v for k, v in env.items() if k != "HARNESS_PYTHON"}, "HARNESS_VENV": sys.prefix,
                 "PATH": os.pathsep.join(p for p in env.get("PATH", os.environ["PATH"]).split(os.pathsep)
                                         if p != venv_bin)}
    # the array's size as the header of slurm/array.sbatch says: one line per planned job
    plan = subprocess.run([sys.executable, "-m", "jobs.sweep", *args, "plan_only=true"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert plan.returncode == 0, plan.stderr
    size = len(plan.stdout.strip().splitlines())
    started = time.monotonic()
    job = sbatch(slurm, tasks_env, [f"--array=0-{size - 1}", "--cpus-per-task=1", "--time=15",
                              f"--output={out}/slurm-%A_%a.out", "slurm/array.sbatch", *args])
    slurm.wait(job, timeout=600)
    print(f"array.sbatch: {size} tasks in {time.monotonic() - started:.0f}s")
    states = slurm.job_states(job)
    logs = {int(re.search(r"_(\d+)\.out$", path).group(1)): Path(path).read_text()
            for path in glob(f"{out}/slurm-{job}_*.out")}
    leftovers = job_processes(job)
    # afterwards, the plain sweep command with the same arguments (local Ray): reuses every job
    started = time.monotonic()
    final = subprocess.run([sys.executable, "-m", "jobs.sweep", *args], cwd=ROOT, capture_output=True, text=True,
                           env={**env, "WANDB_MODE": "disabled"}, timeout=300)   # no W&B stage run: time
    print(f"jobs.sweep after the array: {time.monotonic() - started:.0f}s")
    return SimpleNamespace(job=job, size=size, states=states, logs=logs, dir=out / "smoke", marker=marker,
                           plan=plan.stdout, final=final, leftovers=leftovers)


def test_array_task_i_trains_job_i_of_the_plan(array):
    assert array.size == 6
    assert array.states == ["COMPLETED"] * 6, array.states
    ids = [line.split("\t")[1] for line in array.plan.strip().splitlines()]
    assert ids == [entry["id"] for entry in json.loads((array.dir / "plan.json").read_text())]
    assert sorted(m["job_id"] for m in metrics(array.dir)) == sorted(ids)
    for index, job_id in enumerate(ids):
        assert "[sweep] task %d: trained" % index in array.logs[index], array.logs[index][-2000:]
        # each task's log ends with the sync command of its own job's offline run
        own_runs = sorted(glob(f"{array.dir}/jobs/{job_id}/wandb/offline-run-*"))
        assert own_runs and sync_targets(last_line(array.logs[index])) == own_runs
    assert array.leftovers == [], array.leftovers
    assert not array.marker.exists()


def test_sweep_after_the_array_reuses_every_job_and_writes_the_report(array):
    assert array.final.returncode == 0, array.final.stderr[-3000:]
    assert "[sweep] trained 0, reused 6, failed 0" in array.final.stderr
    assert (array.dir / "report.html").exists()


# --- Hydra's submitit launcher -------------------------------------------------------------------------------------

def test_submitit_launcher_runs_a_multirun_as_slurm_jobs(slurm, env, tmp_path):
    started = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "jobs.train", "-m", "hydra/launcher=slurm", "model=softmax,logistic",
         "data.digits=[3,7]", "data.limit=200", "trainer.max_epochs=1", "logger=none", f"hydra.sweep.dir={tmp_path}",
         "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=10"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    print(f"submitit multirun: {time.monotonic() - started:.0f}s")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    jobs = {int(d.name): json.loads((d / "metrics.json").read_text()) for d in tmp_path.iterdir() if d.name.isdigit()}
    assert sorted(jobs) == [0, 1]
    assert {m["choices"]["model"] for m in jobs.values()} == {"softmax", "logistic"}
    # the jobs ran under SLURM: submitit's folders are named after SLURM job ids that slurmctld knows as done
    slurm_ids = {d.name.split("_")[0] for d in (tmp_path / ".submitit").iterdir() if d.name[0].isdigit()}
    assert slurm_ids
    for slurm_id in slurm_ids:   # the results come back a moment before SLURM marks the job done
        assert slurm.wait(slurm_id, timeout=60) == "COMPLETED"


@pytest.fixture(scope="module")
def refused(slurm, env, tmp_path_factory):
    """Two submitit multiruns that the cluster cannot take, run side by side: an unknown partition, and more CPUs
    than its one node has. Each must be refused before anything is submitted."""
    from concurrent.futures import ThreadPoolExecutor

    cases = {"partition": ["hydra.launcher.partition=gpu"], "cpus": ["hydra.launcher.cpus_per_task=64"]}

    def run(args: list[str]) -> subprocess.CompletedProcess:
        out = tmp_path_factory.mktemp("refused")
        return subprocess.run([sys.executable, "-m", "jobs.train", "-m", "hydra/launcher=slurm", "model=softmax",
                               "logger=none", f"hydra.sweep.dir={out}", "hydra.launcher.mem_gb=1", *args],
                              cwd=ROOT, env={k: v for k, v in env.items() if k != "HYDRA_FULL_ERROR"},
                              capture_output=True, text=True, timeout=120)

    with ThreadPoolExecutor(2) as pool:
        results = dict(zip(cases, pool.map(run, cases.values())))
    queued = subprocess.run(["squeue", "-h", "-o", "%A"], env=slurm.env, capture_output=True, text=True, timeout=30)
    return results, queued.stdout.split(), slurm


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: "), result.stderr[-3000:]
    return lines[-1]


def test_submitit_launcher_refuses_an_unknown_partition_naming_the_ones_that_exist(refused):
    results, queued, slurm = refused
    line = one_line_error(results["partition"])
    assert line == (f"error: hydra.launcher.partition=gpu: no such SLURM partition; partitions: "
                    f"{slurm.partition} (default)")
    assert queued == []                                               # nothing was submitted


def test_submitit_launcher_refuses_a_request_no_node_can_hold(refused):
    results, queued, slurm = refused
    line = one_line_error(results["cpus"])
    assert "64 CPUs" in line and f"0 of the 1 node(s) of partition {slurm.partition}" in line, line
    assert f"largest: {slurm.cpus} CPUs" in line, line
    assert queued == []
