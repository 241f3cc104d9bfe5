"""Nobody else on the network runs code in a sweep: every Ray cluster Harness starts takes a fresh token, handed over
only through the environment. The local two-node cluster with the Ray launcher is checked in tests/test_launcher.py
and SLURM's sweep.sbatch in tests/test_slurm.py (their runs are live there already)."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.support.commands import environment, run_command
from pipeline import load_model, pretrained, store
from pipeline.cluster import auth
from pipeline.errors import ConfigError
from tests.support.intruder import gcs_address, intrude, leaks, token_below

ROOT = Path(__file__).resolve().parent.parent
# One quick job, W&B offline (its files are searched for the token too), long enough for an intruder to try.
SWEEP = ["experiment=smoke", "sweep.grid.model=softmax", "sweep.grid.regularizer=none", "report.images=0",
         "transfer.enabled=false", "evaluation.enabled=false"]
STALE = "0123456789abcdef" * 4   # a wrong token that an earlier ray.init() left in ~/.ray/auth_token


@pytest.mark.slow
def test_single_machine_sweep_refuses_an_intruder_and_keeps_its_token_out_of_files(tmp_path):
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(STALE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k != "HYDRA_FULL_ERROR"}
    env.update(HOME=str(home), WANDB_MODE="offline")
    sweep_dir = tmp_path / "sweep"
    driver = subprocess.Popen([sys.executable, "-m", "jobs.sweep", *SWEEP, f"dir={sweep_dir}"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while (address := gcs_address(driver.pid)) is None:
            assert driver.poll() is None, f"the sweep ended before Ray started:\n{driver.communicate()[1][-3000:]}"
            assert time.monotonic() < deadline, "Ray did not start"
            time.sleep(0.5)
        token = token_below(driver.pid)
        verdict = intrude(address, tmp_path / "intruder")
        print(f"single-machine instance ({address}): intruder {verdict}")
        assert driver.poll() is None, "the sweep ended before the intruder was done: the test proves nothing"
        during = leaks(token, sweep_dir) if token else []
        _, stderr = driver.communicate(timeout=600)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert verdict.startswith("refused"), verdict
    assert driver.returncode == 0, stderr[-3000:]                         # despite the stale ~/.ray/auth_token
    assert "[sweep] trained 1, reused 0, failed 0" in stderr
    assert token and re.fullmatch(r"[0-9a-f]{64}", token), "the run has no fresh token"
    assert (home / ".ray" / "auth_token").read_text() == STALE          # the run's own token won, nothing written
    assert list(sweep_dir.rglob("offline-run-*")), "no W&B offline files to search"
    assert during == [] and leaks(token, sweep_dir) == []
    assert "Ray token authentication is off" not in stderr


def test_every_cluster_gets_a_fresh_token():
    first, second = auth.cluster_env(), auth.cluster_env()
    assert first[auth.MODE] == "token" and re.fullmatch(r"[0-9a-f]{64}", first[auth.TOKEN])
    assert first[auth.TOKEN] != second[auth.TOKEN]


@pytest.mark.parametrize("how", ["cluster.auth=false", "RAY_AUTH_MODE=disabled"])
def test_opting_out_prints_one_warning_line(how, monkeypatch, capsys):
    monkeypatch.setattr(auth, "_warned", False)
    if how.startswith("RAY_AUTH_MODE"):
        monkeypatch.setenv(auth.MODE, "disabled")
    for _ in range(2):   # the cluster's nodes and its driver: warned once
        assert auth.cluster_env(auth=how != "cluster.auth=false") == {auth.MODE: "disabled"}
    warning = capsys.readouterr().err.splitlines()
    assert len(warning) == 1 and warning[0].startswith(f"warning: Ray token authentication is off ({how})")
    assert "anyone who can reach this machine can run code as" in warning[0]


def test_sbatch_gets_its_exports_from_the_sweeps_overrides(monkeypatch, capsys):
    monkeypatch.delenv(auth.MODE, raising=False)
    monkeypatch.setattr(auth, "_warned", False)
    auth.main(["experiment=smoke", "+note='a b'"])
    on = capsys.readouterr()
    assert re.fullmatch(r"export RAY_AUTH_MODE=token RAY_AUTH_TOKEN=[0-9a-f]{64}\n", on.out) and on.err == ""
    auth.main(["experiment=smoke", "cluster.auth=false"])
    off = capsys.readouterr()
    assert off.out == "export RAY_AUTH_MODE=disabled\n" and "cluster.auth=false" in off.err


def test_a_driver_joins_with_the_users_token_file(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    for key in (auth.MODE, auth.TOKEN, auth.TOKEN_PATH):
        monkeypatch.delenv(key, raising=False)
    assert auth.join_env() == {}                          # no token anywhere: Ray's own default
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text(STALE)
    assert auth.join_env() == {auth.MODE: "token"}        # Ray reads the file; an explicit address needs the mode
    assert auth.join_env(auth=False) == {auth.MODE: "disabled"}


# --- A shared sweep folder is data, never code (issue 30) ---------------------------------------------------------
# Each case plants what an attacker with write access to a shared sweep or job folder would, with a harmless payload:
# a pickle whose only effect is to create a marker file, which must not appear.

class Payload:
    """Unpickled, it creates `marker` (and nothing else)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


@pytest.fixture(scope="module")
def shared_sweep(tmp_path_factory) -> Path:
    """A finished sweep of one quick softmax job (transfer on, one example image: the report builds its test set)."""
    sweep_dir = tmp_path_factory.mktemp("shared") / "sweep"
    done = run_command(["jobs.sweep", f"dir={sweep_dir}", "sweep.name=shared", "sweep.grid.model=softmax",
                        "sweep.grid.regularizer=none", "sweep.overrides=['trainer.max_epochs=1','data.limit=600']",
                        "evaluation.enabled=false", "report.images=1", "cluster.num_cpus=1"], timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return sweep_dir


@pytest.fixture
def sweep_copy(shared_sweep, tmp_path) -> Path:
    return Path(shutil.copytree(shared_sweep, tmp_path / "sweep", symlinks=True))


def test_trust_refuses_what_is_not_a_class_of_its_kind_and_takes_what_is():
    from pipeline import trust

    trust.check({"_target_": "torch.nn.Linear", "in_features": 2, "out_features": 1}, "model", "model.pt")
    trust.check({"_target_": "pipeline.pretrained.load", "path": "pretrained.pt",
                 "architecture": {"_target_": "torch.nn.Linear"}}, "model", "model.pt")
    trust.check({"_target_": "pipeline.data.TensorDataModule", "source": "pipeline.sources.arrays"}, "data",
                "plan.json")
    trust.check({"_target_": "pipeline.tracking.Tracker"}, "logger.wandb", "plan.json")
    refused = {
        ("model", "model._target_=pandas.read_pickle", "a function, not a class"):
            {"_target_": "pandas.read_pickle", "filepath_or_buffer": "x.pkl"},
        ("model", "model.architecture._target_=numpy.load", "a function, not a class"):
            {"_target_": "pipeline.pretrained.load", "architecture": {"_target_": "numpy.load"}},
        ("model", "model.0.1._target_=pipeline.pretrained.load", "a function, not a class"):
            {"0": [{}, {"_target_": "pipeline.pretrained.load"}]},   # Harness's loader only where a model goes
        ("optimizer", "optimizer._target_=torch.nn.Linear", "a class of another kind"): {"_target_": "torch.nn.Linear"},
        ("data", "data.source=pandas.read_pickle", "not one of Harness's data sources"):
            {"_target_": "pipeline.data.TensorDataModule", "source": "pandas.read_pickle"},
        ("data", "data._target_=no.such.Module", "it cannot be imported"): {"_target_": "no.such.Module"},
        ("model", "model.name=${oc.env:HOME}", "an interpolation"): {"_target_": "torch.nn.Linear",
                                                                      "name": "${oc.env:HOME}"},
    }
    for (place, key, why), node in refused.items():
        with pytest.raises(ConfigError, match=re.escape(f"file.yaml: {key} is refused: {why}")):
            trust.check(node, place, "file.yaml")


def only_job(sweep_dir: Path) -> Path:
    (job,) = (sweep_dir / "jobs").iterdir()
    return job


def plant_model(job: Path, model_config: dict) -> None:
    """What an attacker does to a job: a model.pt whose model_config names their target, and its sha256 in
    metrics.json, so that the job still looks complete."""



    state = torch.load(job / "model.pt", weights_only=True)
    torch.save({**state, "model_config": model_config}, job / "model.pt")
    metrics = json.loads((job / "metrics.json").read_text())
    metrics["checkpoint"]["sha256"] = hashlib.sha256((job / "model.pt").read_bytes()).hexdigest()
    (job / "metrics.json").write_text(json.dumps(metrics))


def pickle_payload(folder: Path, marker: Path) -> Path:

    path = folder / "pretrained.pkl"
    path.write_bytes(pickle.dumps(Payload(marker)))
    return path


def refused_in_one_line(done, *parts: str) -> str:
    """The command ended with exit code 2 and its last line is the one error line, naming each of `parts`."""
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 2 and last.startswith("error: "), done.stderr[-3000:]
    for part in parts:
        assert part in last, last
    return last


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize("config, key, why", [
    ({"_target_": "pandas.read_pickle", "filepath_or_buffer": "{pkl}"}, "model._target_=pandas.read_pickle",
     "a function, not a class (torch.nn.Module subclass expected)"),
    ({"_target_": "numpy.load", "file": "{pkl}", "allow_pickle": True}, "model._target_=numpy.load", "a function"),
    ({"_target_": "pipeline.models.Ensemble", "_recursive_": False, "size": 1,
      "member": {"_target_": "pandas.read_pickle", "filepath_or_buffer": "{pkl}"}},
     "model.member._target_=pandas.read_pickle", "a function"),
    ({"_target_": "torch.optim.SGD", "params": {"_target_": "pandas.read_pickle", "filepath_or_buffer": "{pkl}"}},
     "model._target_=torch.optim.SGD", "a class of another kind (torch.nn.Module subclass expected)"),
    ({"_target_": "pipeline.models.Softmax", "name": "${oc.env:HOME}"}, "model.name=${oc.env:HOME}",
     "an interpolation"),
])
def test_load_model_calls_nothing_a_planted_model_pt_names(sweep_copy, tmp_path, config, key, why):


    job, marker = only_job(sweep_copy), tmp_path / "marker"
    pkl = pickle_payload(sweep_copy, marker)
    plant_model(job, json.loads(json.dumps(config).replace("{pkl}", str(pkl))))
    with pytest.raises(ConfigError) as refused:
        load_model(job)
    assert str(refused.value).startswith(f"{job / 'model.pt'}: {key} is refused: {why}")
    assert "\n" not in str(refused.value) and not marker.exists()


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize("command", ["jobs.report", "jobs.train", "jobs.sweep"])
def test_commands_refuse_a_planted_model_pt_in_one_line(sweep_copy, tmp_path, command):
    """`jobs.report dir=<sweep>`, `jobs.train model=pretrained model.path=<job>` and `jobs.sweep` over the same
    sweep (the job looks complete: its transfer task and the report stage load it)."""

    job, marker = only_job(sweep_copy), tmp_path / "marker"
    plant_model(job, {"_target_": "pandas.read_pickle", "filepath_or_buffer": str(pickle_payload(sweep_copy, marker))})
    args = {"jobs.report": [f"dir={sweep_copy}"],
            "jobs.train": ["model=pretrained", f"model.path={job}", f"hydra.run.dir={tmp_path / 'train'}"],
            "jobs.sweep": [f"dir={sweep_copy}", "sweep.name=shared", "sweep.grid.model=softmax",
                           "sweep.grid.regularizer=none", "sweep.overrides=['trainer.max_epochs=1','data.limit=600']",
                           "evaluation.enabled=false", "report.images=1", "cluster.num_cpus=1"]}[command]
    done = run_command([command, *args], timeout=600)
    refused_in_one_line(done, f"{job / 'model.pt'}: model._target_=pandas.read_pickle is refused")
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.ray
def test_weights_only_from_a_job_folder_with_your_own_class(sweep_copy, tmp_path):
    """model=pretrained with model.architecture takes a job's weights and calls nothing its model.pt names."""

    job, marker = only_job(sweep_copy), tmp_path / "marker"
    plant_model(job, {"_target_": "pandas.read_pickle", "filepath_or_buffer": str(pickle_payload(sweep_copy, marker))})
    model = pretrained.load(str(job / "model.pt"), {"_target_": "pipeline.models.Softmax"}, [1, 28, 28], 10)
    assert type(model).__name__ == "Softmax" and not marker.exists()


@pytest.mark.slow
@pytest.mark.ray
def test_a_planted_plan_json_data_source_is_refused(sweep_copy, tmp_path):

    marker = tmp_path / "marker"
    plan = json.loads((sweep_copy / "plan.json").read_text())
    plan[0]["config"]["data"].update(source="pandas.read_pickle",
                                     filepath_or_buffer=str(pickle_payload(sweep_copy, marker)))
    (sweep_copy / "plan.json").write_text(json.dumps(plan))

    done = run_command(["jobs.report", f"dir={sweep_copy}"])
    refused_in_one_line(done, f"{sweep_copy / 'plan.json'}: data.source=pandas.read_pickle is refused: not one of "
                              "Harness's data sources")
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.ray
def test_interpolations_in_saved_configs_are_refused_not_resolved(sweep_copy, monkeypatch):
    """A saved config is read as written: `${oc.env:...}` would copy a secret of the reader into the report."""

    job = only_job(sweep_copy)
    config = job / "config.yaml"
    config.write_text(config.read_text().replace("name: mnist5k", "name: ${oc.env:SECRET}"))
    monkeypatch.setenv("SECRET", "hunter2")
    with pytest.raises(ConfigError, match=rf"^{config}: data.name=\$\{{oc.env:SECRET\}} is refused: an interpolation"):
        store.read_config(job)
    settings = sweep_copy / "sweep.yaml"
    settings.write_text(settings.read_text().replace("name: shared", "name: ${oc.env:SECRET}", 1))
    done = run_command(["jobs.report", f"dir={sweep_copy}"], SECRET="hunter2")
    refused_in_one_line(done, f"{settings}: ", "${oc.env:SECRET} is refused: an interpolation")
    assert "hunter2" not in done.stderr + done.stdout


@pytest.mark.slow
@pytest.mark.ray
def test_a_job_id_that_leads_out_of_the_sweep_is_refused(sweep_copy, tmp_path):


    outside = tmp_path / "outside_job"
    shutil.copytree(only_job(sweep_copy), outside)
    before = sorted(p.name for p in outside.iterdir())
    plan = json.loads((sweep_copy / "plan.json").read_text())
    plan[0]["id"] = "../../outside_job"
    (sweep_copy / "plan.json").write_text(json.dumps(plan))
    done = run_command(["jobs.report", f"dir={sweep_copy}"])
    refused_in_one_line(done, f"{sweep_copy / 'plan.json'}: job id '../../outside_job' is refused: a job id is 12 "
                              "hex digits")
    assert sorted(p.name for p in outside.iterdir()) == before


@pytest.mark.slow
@pytest.mark.parametrize("args, key", [
    (["sweep.grid.model=softmax", "sweep.overrides=[\"data.name='<img src=x onerror=alert(1)>'\"]"], "data.name"),
    (["sweep.grid.model=softmax", "sweep.overrides=['data.name=../../x']"], "data.name"),
    (["experiment=zoo", "zoo.models={..: /tmp/a.pt}"], "zoo.models"),
])
def test_names_that_become_file_names_are_plain_words(args, key, tmp_path):
    done = run_command(["jobs.sweep", *args, "plan_only=true", f"dir={tmp_path / 'sweep'}"])
    refused_in_one_line(done, f"{key}=", "is refused: it becomes part of a file name")


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize("folder, command, key", [("parts/transfer", "jobs.transfer", "parts folder"),
                                                 ("plots", "jobs.report", "plots folder")])
def test_a_symlinked_folder_of_the_sweep_is_refused_and_nothing_there_changes(sweep_copy, tmp_path, folder, command,
                                                                              key):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "results.csv").write_text("precious\n")
    shutil.rmtree(sweep_copy / folder)
    (sweep_copy / folder).symlink_to(victim)
    done = run_command([command, f"dir={sweep_copy}", "cluster.num_cpus=1"])
    refused_in_one_line(done, f"{key}={folder} is refused: it leads out of {sweep_copy}")
    assert [p.name for p in victim.iterdir()] == ["results.csv"]
    assert (victim / "results.csv").read_text() == "precious\n"


@pytest.mark.parametrize("entry", [".lock", "attempts.jsonl", "job.log"])
def test_symlinked_entries_of_a_job_are_refused(tmp_path, entry):

    job, victim = tmp_path / "job", tmp_path / "victim.txt"
    job.mkdir()
    victim.write_text("precious\n")
    (job / entry).symlink_to(victim)
    use = {".lock": lambda: store.claim(job).__enter__(), "attempts.jsonl": lambda: store.start_attempt(job),
           "job.log": lambda: store.job_log(job).__enter__()}[entry]
    with pytest.raises(ConfigError, match=rf"^{job / entry} is refused: a symlink; Harness follows nothing"):
        use()
    assert victim.read_text() == "precious\n"


def test_keep_copies_regular_files_only_and_never_widens_their_mode(tmp_path):
    """A job folder given to model=pretrained (someone else's): its checkpoint and copies, regular files only."""
    source = tmp_path / "source"
    source.mkdir()
    (source / "model.pt").write_bytes(b"weights")   # keep() copies bytes; it never loads them
    secret = tmp_path / "secret.pt"
    secret.write_bytes(b"someone else's")
    secret.chmod(0o600)
    (source / "pretrained.pt").symlink_to(secret)
    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(ConfigError, match=rf"^{source / 'pretrained.pt'} is refused: a symlink"):
        pretrained.keep(target, {"path": str(source)})
    assert not (target / "pretrained.pt").exists()
    (source / "pretrained.pt").unlink()
    (source / "model.pt").chmod(0o600)
    pretrained.keep(target, {"path": str(source)})
    assert (target / "model.pt").stat().st_mode & 0o777 == 0o600


@pytest.mark.slow
def test_a_failed_download_removes_only_its_own_private_folder(tmp_path):
    """Two runs share a data.root: while one downloads (its server answers only when told to), another process
    writes its 18 files there; then the download fails. The other's files stay; the failed run leaves nothing."""
    import http.server
    import threading

    release = threading.Event()

    class Stalling(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            release.wait(120)
            self.send_error(404)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stalling)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    root, raw = tmp_path / "data", tmp_path / "data" / "MNIST" / "raw"
    download = (f"import torchvision, pipeline.sources as s; torchvision.datasets.MNIST.mirrors = "
                f"['http://127.0.0.1:{server.server_address[1]}/']; "
                f"s.torchvision('MNIST', {str(root)!r}, download=True)")
    downloader = subprocess.Popen([sys.executable, "-c", download], cwd=ROOT, env=environment(),
                                  stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (private := list(tmp_path.glob(".data.download-*"))):
            assert downloader.poll() is None and time.monotonic() < deadline, "the download did not start"
            time.sleep(0.1)
        assert private[0].stat().st_mode & 0o777 == 0o700
        other = f"from pathlib import Path; r = Path({str(raw)!r}); r.mkdir(parents=True, exist_ok=True); " \
                "[(r / f'part{i}').write_text('theirs') for i in range(18)]"
        subprocess.run([sys.executable, "-c", other], check=True)
        release.set()
        _, stderr = downloader.communicate(timeout=120)
    finally:
        release.set()
        server.shutdown()
        if downloader.poll() is None:
            downloader.kill()
    assert "DataMissing: MNIST not found under data.root=" in stderr.strip().splitlines()[-1]
    assert sorted(p.name for p in raw.iterdir()) == sorted(f"part{i}" for i in range(18))
    assert {p.read_text() for p in raw.iterdir()} == {"theirs"} and not list(tmp_path.glob(".data.download-*"))


@pytest.mark.slow
@pytest.mark.slurm
def test_sweep_sbatch_uses_private_temp_folders_not_what_another_user_planted(tmp_path):
    """Another local user (uid 65534) pre-creates what sweep.sbatch used to write at predictable names in /tmp: a
    0777 /tmp/ray-<job id> holding a symlink ray-start.log -> a file of the victim, and /tmp/ray-<job id>.driver.err
    -> another. The sweep runs in folders of its own (mktemp -d) and neither file changes."""
    from tests.support.slurm_cluster import SlurmCluster, slurm_available

    if reason := slurm_available():
        pytest.skip(reason)
    victims = [tmp_path / "victim-log", tmp_path / "victim-err"]
    for victim in victims:
        victim.write_text("precious\n")
    with SlurmCluster(tmp_path / "slurm") as slurm:
        probe = slurm.sbatch(["--hold", "--wrap=true", f"--output={tmp_path}/probe.out"])
        subprocess.run(["scancel", str(probe)], env=slurm.env, check=True, timeout=30)
        planted = [Path(f"/tmp/ray-{job}") for job in range(probe + 1, probe + 4)]   # the next job ids
        try:
            for folder in planted:
                subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c",
                                f"mkdir -m 0777 {folder} && ln -s {victims[0]} {folder}/ray-start.log && "
                                f"ln -s {victims[1]} {folder}.driver.err"], check=True, timeout=30)
            env = {**slurm.env, "HARNESS_PYTHON": sys.executable, "WANDB_MODE": "disabled", "HARNESS_REQUIRE_CUDA": "0",
                   "HARNESS_RAY_ARGS": "--object-store-memory=200000000", "HARNESS_RAY_HEAD_IP": "127.0.0.1"}
            done = subprocess.run(["sbatch", "--parsable", "--cpus-per-task=2", "--time=10",
                                   f"--output={tmp_path}/slurm-%j.out", "slurm/sweep.sbatch", "experiment=smoke",
                                   "sweep.grid.model=softmax", "sweep.grid.regularizer=none", "report.images=0",
                                   "transfer.enabled=false", "evaluation.enabled=false", f"dir={tmp_path / 'sweep'}"],
                                  cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
            job = int(done.stdout.strip().split(";")[0])
            state = slurm.wait(job, timeout=600)
            log = (tmp_path / f"slurm-{job}.out").read_text()
            assert state == "COMPLETED" and "[sweep] trained 1, reused 0, failed 0" in log, log[-3000:]
            assert Path(f"/tmp/ray-{job}") in planted   # the attacker guessed this job's old names right
            assert [victim.read_text() for victim in victims] == ["precious\n"] * 2
            assert all(sorted(p.name for p in folder.iterdir()) == ["ray-start.log"] for folder in planted)
            used = re.findall(r"Ray temp dir (\S+)", log)
            assert len(used) == 1 and re.fullmatch(r"/tmp/ray-[A-Za-z0-9]{8}", used[0]) and not Path(used[0]).exists()
        finally:
            for folder in planted:
                subprocess.run(["rm", "-rf", str(folder), f"{folder}.driver.err"], timeout=30)


# --- Bad files end in one line, before they take the machine's memory ------------------------------------------

def npz_claiming(path: Path, shape: tuple[int, ...]) -> Path:
    """A .npz whose x_train header says `shape` (uint8) and whose data stops after a few bytes: what a compressed
    bomb looks like to a reader of headers, without writing gigabytes here."""
    import io
    import zipfile

    import numpy as np

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for key, array in {"y_train": np.zeros(10, np.int64), "x_test": np.zeros((10, 28, 28), np.uint8),
                           "y_test": np.zeros(10, np.int64)}.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, array)
            archive.writestr(f"{key}.npy", buffer.getvalue())
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": shape})
        archive.writestr("x_train.npy", header.getvalue() + bytes(1000))
    return path


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A PNG whose header says width x height grey pixels (its pixel data cut short): a decompression bomb to PIL."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(1000)))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.slow
def test_an_npz_bomb_is_refused_from_its_headers_in_one_line(tmp_path):
    bomb = npz_claiming(tmp_path / "bomb.npz", (1_000_000, 200, 100))   # 20 GB of images
    done = run_command(["jobs.train", "data=arrays", f"data.path={bomb}", f"hydra.run.dir={tmp_path / 'run'}"])
    last = refused_in_one_line(done, f"{bomb}: its arrays hold 20.00 GB, more than the ", "GB this machine can load")
    assert re.search(r"of its \d+\.\d GB of memory", last)


@pytest.mark.slow
def test_a_png_bomb_is_one_line_naming_the_file(tmp_path):
    root = tmp_path / "images"
    for split in ("train", "test"):
        (root / split / "zero").mkdir(parents=True)
    bomb = png_claiming(root / "train" / "zero" / "a.png", 20_000, 10_000)   # 200 megapixels
    png_claiming(root / "test" / "zero" / "b.png", 28, 28)
    done = run_command(["jobs.train", "data=folder", f"data.root={root}", f"hydra.run.dir={tmp_path / 'run'}"])
    refused_in_one_line(done, f"{bomb}: not a readable image (Image size (200000000 pixels) exceeds limit")


@pytest.mark.slow
def test_a_huge_grid_is_refused_before_it_is_expanded(tmp_path):
    done = run_command(["jobs.sweep", "sweep.grid.model=softmax", "sweep.grid.regularizer=none",
                        "sweep.grid.seed=range(100000000)", "plan_only=true", f"dir={tmp_path / 'sweep'}"], timeout=60)
    refused_in_one_line(done, "has 100,000,000 jobs, more than sweep.max_jobs=10,000,000")


@pytest.mark.slow
@pytest.mark.ray
def test_names_with_markup_are_text_in_plots_and_report_md(sweep_copy):
    """Setting labels from plan.json with mathtext ($...$) and HTML: the report is drawn, report.md shows them."""
    plan = json.loads((sweep_copy / "plan.json").read_text())
    plan[0]["overrides"] = ["model=$\\foo$", "regularizer=<img src=x onerror=alert(1)>"]
    (sweep_copy / "plan.json").write_text(json.dumps(plan))
    done = run_command(["jobs.report", f"dir={sweep_copy}"])
    assert done.returncode == 0, done.stderr[-3000:]
    report = (sweep_copy / "report.md").read_text()
    assert "$\\\\foo$,\\<img src=x onerror=alert(1)>" in report        # shown as written, never markup
    assert not re.search(r"(?<!\\)<img", report)


@pytest.mark.slow
@pytest.mark.ray
def test_a_ray_instance_harness_starts_serves_no_metrics_endpoint():
    """Ray's Prometheus endpoint on each node answers without the token: the instance jobs.sweep starts has none."""
    probe = ("import socket, ray; from pipeline.cluster import connect; connect(None, num_cpus=1); "
             "node = ray.nodes()[0]; port = node['MetricsExportPort']; "
             "print(port, 0 < port < 65536 and socket.socket().connect_ex((node['NodeManagerAddress'], port)) == 0)")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=environment(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-1] == "False", done.stdout   # no port, or nothing listening on it
