"""The benchmark runs end to end (`--quick`), writes its JSON and prints every row. No timing is asserted, and no
count: the benchmark measures, tests/test_benchmark_checks.py holds what its count rows show."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.gpu import gpu_packing, most_at_once
from benchmarks.sizes import QUICK
from benchmarks.table import COMPARED, markdown
from benchmarks.workload import make_batch, make_model
from tests.support.commands import environment

ROOT = Path(__file__).resolve().parent.parent
# The first cell of every row `--quick` prints on a machine without a GPU, in order.
QUICK_ROWS = [*["FGSM robustness curve, 10 ε"] * 2, *["FGSM, one ε (0.25)"] * 2,
              *["adversarial training step (α = 0.5)"] * 2, *["Lightning training epoch, on-device data"] * 2,
              "adversarial step passes (hooks)", "transfer stage, M = 3 models, K = 4 ε",
              *["evaluation stage per job, by attack (both clippings)"] * 3,
              *["evaluation stage per job: the six-ε curve vs one ε before it"] * 3,
              "evaluation stage: the six-ε curve vs one ε before it, the jobs above together",
              "planning: marginal cost per job, 60 → 300 jobs", "planning: `plan_only=true`, 1,002 jobs",
              "transfer stage, 2 models × S seeds, pairs=seed_matched", "transfer stage, 2 models × S seeds, pairs=all",
              "sweep on a two-node local Ray cluster", "per-job overhead", "Hydra multirun launchers", "the main job",
              "the main job, Ray token auth on / off", "GPU extras"]


def benchmark(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobs.benchmark", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("benchmark") / "benchmark.json"
    result = benchmark("--quick", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text()), result.stdout


def comparisons(report: dict) -> list[dict]:
    return [entry for name in COMPARED for entry in report[name]]


@pytest.mark.slow
def test_every_comparison_ran_for_both_models(quick):
    report, _ = quick
    assert report["mode"] == "quick" and report["device"] == "cpu" and report["errors"] == []
    assert {(c["id"], c["model"]) for c in comparisons(report)} == {(cid, model) for cid in COMPARED
                                                                   for model in ("softmax", "maxout")}
    for entry in comparisons(report):
        for side in ("measured", "reference"):
            assert set(entry[side]["seconds"]) >= {"median", "q1", "q3", "min", "max", "n"}
            assert entry[side]["seconds"]["min"] > 0
        assert entry["ratio"]["n"] == entry["measured"]["seconds"]["n"] == entry["reference"]["seconds"]["n"]
        assert entry["target"]["op"] in (">=", "<=")
        assert entry["judged"] is False and entry["passed"] is None   # --quick judges no timing


@pytest.mark.slow
def test_the_scale_rows_ran_at_their_sizes(quick):
    report, _ = quick
    plan = report["planning"]
    assert [r["jobs"] for r in plan["runs"]] == [60, 300] and plan["reference"]["jobs"] == 30
    assert plan["big"]["jobs"] == 1_002 and plan["big"]["plan_bytes"] > 0   # plan_only as a user runs it
    assert 0 < plan["big"]["peak_bytes"] < 1e9 and plan["big"]["seconds"] > 0
    runs = report["transfer_scaling"]["runs"]
    assert [(r["pairs"], r["seeds"]) for r in runs] == [("seed_matched", 1), ("seed_matched", 2), ("seed_matched", 4),
                                                        ("all", 1), ("all", 2)]


@pytest.mark.slow
def test_every_row_is_printed_and_slow_stages_are_skipped(quick):
    report, stdout = quick
    assert all("skipped" in report[name] for name in ("sweep", "overhead", "launcher", "main_job", "auth"))
    assert report["table_markdown"] in stdout
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in stdout.splitlines()
            if line.startswith("| ")]
    if not torch.cuda.is_available():
        assert "needs a GPU" in report["gpu"]["skipped"]
        assert [r[0] for r in rows[1:]] == QUICK_ROWS
    assert stdout.startswith("| comparison |") and "not judged" in stdout
    for entry in comparisons(report):                         # a row per comparison and model, with its numbers
        row = next(r for r in rows if r[:3] == [entry["title"], entry["model"], f"{entry['batch_size']:,}"])
        assert row[3].startswith(entry["measured"]["label"] + ": ") and row[-1] == "not judged (--quick)", row
        assert row[5].startswith(f"{entry['ratio']['median']:.2f}×"), row
    for name in ("sweep on a two-node local Ray cluster", "the main job"):    # skipped rows still listed
        assert any(r[0] == name and "skipped" in "".join(r) for r in rows), name


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--device", "tpu"], "--device"),
    (["--only", "nothing"], "--only=nothing"),
    (["--threads", "0"], "--threads=0"),
    (["--out", "/proc/benchmark.json"], "not writable"),
    (["--ray-address", "127.0.0.1:1"], "--ray-address=127.0.0.1:1 is unreachable"),
])
def test_bad_arguments_give_one_line_and_exit_2(args, message):
    result = benchmark(*args, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible")
def test_cuda_without_a_gpu_is_refused():
    result = benchmark("--device", "cuda", timeout=60)
    assert result.returncode == 2 and result.stderr.strip().startswith("error: --device cuda: no CUDA device")


@pytest.mark.slow
def test_the_ray_sweep_comparison_runs_on_a_two_node_cluster(tmp_path):
    out = tmp_path / "ray.json"
    result = benchmark("--quick", "--ray", "--only", "sweep", "--out", str(out), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = json.loads(out.read_text())["sweep"]
    assert sweep["slots"] == 2 and sweep["jobs"] == sweep["planned"] == 4
    assert len(sweep["jobs_per_node"]) == 2                       # both nodes trained jobs
    for run in (sweep, sweep["warm"]):
        assert 0 < run["efficiency_train_only"] < run["efficiency"]
        assert all(0 < j["job_seconds"] < run["wall_seconds"] + 1 for j in run["per_job"])
    assert sweep["judged"] is False and sweep["passed"] is None


def test_the_gpu_row_names_the_epoch_size_it_ran():
    """--quick times the GPU epoch on 6,000 examples: its row must not say 60,000."""
    epoch = {"examples": 6_000, "measured": {"seconds": {"median": 0.5}}, "reference": {"seconds": {"median": 0.4}},
             "ratio": {"median": 1.25}}
    report = {"gpu": {"maxout_epoch_60000": epoch, "packing": []}}   # every other stage: not run
    gpu_row = next(line for line in markdown(report).splitlines() if line.startswith("| GPU: maxout epoch"))
    assert "6,000 × 784" in gpu_row and "60,000" not in gpu_row


def test_the_lightning_epoch_is_timed_through_the_modules_own_epoch_end_check():
    """The plain loop's time includes its loss check; the Lightning time must include the module's: on a diverged
    model the check raises before the timer stops, so no epoch is recorded (as the plain loop returns no time)."""
    from benchmarks.training import lightning_epoch, plain_epoch, trainer_kwargs
    from pipeline.training.module import Diverged

    cpu = torch.device("cpu")
    x, y = make_batch(200, cpu)
    model = make_model("softmax", cpu)
    epochs: list[float] = []
    lightning_epoch(model, x, y, 100, trainer_kwargs(cpu), epochs)
    assert len(epochs) == 1 and epochs[0] > 0
    with torch.no_grad():
        model.linear.weight.fill_(float("nan"))                 # the loss is NaN: the epoch-end check raises
    with pytest.raises(Diverged):
        lightning_epoch(model, x, y, 100, trainer_kwargs(cpu), epochs)
    assert len(epochs) == 1                                      # the timer stopped after the check, not before
    with pytest.raises(RuntimeError, match="NaN"):
        plain_epoch(model, x, y, 100, lambda: None)


def test_most_at_once_counts_overlapping_jobs():
    back_to_back = [{"started_after": 0, "ended_after": 1}, {"started_after": 1, "ended_after": 2}]
    assert most_at_once(back_to_back) == 1
    assert most_at_once(back_to_back + [{"started_after": 0.5, "ended_after": 3}]) == 2


@pytest.mark.slow
def test_jobs_asking_for_a_whole_gpu_run_one_at_a_time():
    """The GPU extras' packing on a logical Ray GPU (this machine has none): jobs that ask for the whole GPU never
    overlap (Ray guarantees it, so any overlap is our request being wrong), and each is given the one GPU. That
    quarter-GPU jobs share it is shown without timing by the next test."""
    (whole,) = gpu_packing(dataclasses.replace(QUICK, gpu_pack=(1,)), "main", epochs=1, timeout=600)
    assert whole["jobs_per_gpu"] == 1 and whole["jobs"] == QUICK.gpu_pack_jobs and not whole["failed"]
    assert whole["cuda_visible_devices"] == ["0"]
    assert whole["most_at_once"] == 1


# Tasks that meet: each marks itself started and waits until `want` tasks have started (or `patience` s).
TOGETHER = """
import json, os, sys, time
from pathlib import Path
from pipeline.cluster import connect
from pipeline.cluster.tasks import run_tasks

def together(folder, key, want, patience):
    mark = Path(folder) / key
    mark.touch()
    deadline = time.monotonic() + patience
    while len(list(Path(folder).iterdir())) < want and time.monotonic() < deadline:
        time.sleep(0.05)
    return len(list(Path(folder).iterdir())), os.environ.get("CUDA_VISIBLE_DEVICES")   # marks stay: both see both

folder, gpus, want, patience = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
connect(None, num_cpus=2, num_gpus=1)
outcome = run_tasks("pack", together, {k: (folder, k, want, patience) for k in ("a", "b")}, cpus=1, gpus=gpus)
print(json.dumps({"results": outcome.results, "failed": outcome.failed}))
"""


@pytest.mark.slow
@pytest.mark.skipif(os.cpu_count() < 2, reason="two jobs at once need two CPUs")
def test_quarter_gpu_tasks_share_the_gpu(tmp_path):
    """Two tasks asking for a quarter of the one GPU each wait for the other to be running: they finish only if Ray
    ran them together (a whole-GPU request would keep the second queued until the first gave up)."""
    result = subprocess.run([sys.executable, "-c", TOGETHER, str(tmp_path), "0.25", "2", "600"],
                            env=environment(RAY_USAGE_STATS_ENABLED="0"), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["failed"] == {}
    assert {key: tuple(value) for key, value in outcome["results"].items()} == {"a": (2, "0"), "b": (2, "0")}
