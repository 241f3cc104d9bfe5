"""The benchmark runs end to end (`--quick`), writes its JSON and holds its counts. No timing is asserted."""
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
from benchmarks.passes import count_passes
from benchmarks.table import markdown
from benchmarks.sizes import QUICK
from benchmarks.workload import make_batch, make_model
from tests.support.commands import environment
from pipeline.regularizers import Adversarial

ROOT = Path(__file__).resolve().parent.parent
TIMED = ("fgsm_curve", "fgsm", "adversarial_step", "lightning_epoch")


def benchmark(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobs.benchmark", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("benchmark") / "benchmark.json"
    result = benchmark("--quick", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text()), result.stdout


@pytest.mark.slow
def test_every_comparison_ran_for_both_models(quick):
    report, _ = quick
    assert report["mode"] == "quick" and report["device"] == "cpu"
    ran = {(c["id"], c["model"]) for c in report["comparisons"] if "skipped" not in c}
    assert ran == {(cid, model) for cid in TIMED for model in ("softmax", "maxout")}
    for entry in report["comparisons"]:
        for side in ("measured", "reference"):
            assert set(entry[side]["seconds"]) >= {"median", "q1", "q3", "min", "max", "n"}
            assert entry[side]["seconds"]["min"] > 0
        assert entry["ratio"]["n"] == entry["measured"]["seconds"]["n"] == entry["reference"]["seconds"]["n"]  # a ratio per pair
        assert entry["target"]["op"] in (">=", "<=")
        assert entry["judged"] is False and entry["passed"] is None   # --quick judges no timing


@pytest.mark.slow
def test_the_fast_attack_computes_what_the_baseline_does(quick):
    report, _ = quick
    for entry in report["comparisons"]:
        if entry["id"] == "fgsm_curve":
            assert entry["work"]["ours"] == {"forwards": 1 + len(entry["epsilons"]), "backwards": 1}
            assert entry["work"]["torchattacks"] == {"forwards": 2 * len(entry["epsilons"]),
                                                     "backwards": len(entry["epsilons"])}
            assert entry["prediction_agreement"] > 0.99
        if entry["id"] == "fgsm":
            assert entry["identical_pixels"] > 0.99


@pytest.mark.slow
def test_counts_hold(quick):
    report, _ = quick
    transfer = report["counts"]["transfer"]
    assert transfer["input_gradients_reported"] == transfer["input_gradients_hooked"] == transfer["models"]
    assert transfer["rows"] == transfer["models"] ** 2 * transfer["epsilons"]
    step = report["counts"]["adversarial_step"]
    for counts in step["per_model"].values():
        assert counts["adversarial"] == {"forwards": 2, "backwards": 2}
        assert counts["clean"] == {"forwards": 1, "backwards": 1}
    assert report["errors"] == []


@pytest.mark.slow
def test_scale_rows_hold_their_counts(quick):
    report, stdout = quick
    plan = report["planning"]
    assert [r["jobs"] for r in plan["runs"]] == [60, 300] and plan["big"]["jobs"] == 1_002
    assert all(r["composed"] == 12 for r in plan["runs"])   # per group combination, not per job
    assert plan["big"]["plan_bytes"] > 0 and plan["reference"]["jobs"] == 30
    assert 0 < plan["big"]["peak_bytes"] < 1e9 and plan["big"]["seconds"] > 0   # plan_only as a user runs it
    scaling = report["transfer_scaling"]
    for run in scaling["runs"]:
        assert run["rows"] == run["expected_rows"]
        jobs = 2 * run["seeds"]
        if run["pairs"] == "seed_matched":    # a task per seed, each loading that seed's 2 models once
            assert run["tasks"] == run["seeds"] and run["models_loaded"] == [2] * run["seeds"]
        else:                                 # a task per source, each loading every model
            assert run["tasks"] == jobs and run["models_loaded"] == [jobs] * jobs
    # rows are pairs of jobs × ε: linear in seeds when seed-matched (2 × 2 per seed), quadratic for all (2S × 2S)
    per_pair = {run["rows"] / (4 * run["seeds"] if run["pairs"] == "seed_matched" else (2 * run["seeds"]) ** 2)
                for run in scaling["runs"]}
    assert len(per_pair) == 1 and per_pair.pop() >= 1, scaling["runs"]
    assert {run["pairs"] for run in scaling["runs"]} == {"seed_matched", "all"}
    assert "planning: marginal cost per job" in stdout and "pairs=seed_matched" in stdout


@pytest.mark.slow
def test_slow_stages_are_skipped_and_the_table_is_printed(quick):
    report, stdout = quick
    assert all("skipped" in report[name] for name in ("sweep", "overhead", "launcher", "main_job"))
    if not torch.cuda.is_available():
        assert "needs a GPU" in report["gpu"]["skipped"]
    assert report["table_markdown"] in stdout
    assert stdout.startswith("| comparison |") and "not judged" in stdout
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in stdout.splitlines()
            if line.startswith("| ")]
    for entry in report["comparisons"]:                       # a row per comparison and model, with its numbers
        row = next(r for r in rows if r[:3] == [entry["title"], entry["model"], f"{entry['batch_size']:,}"])
        assert row[3].startswith(entry["measured"]["label"] + ": ") and row[-1] == "not judged (--quick)", row
        assert row[5].startswith(f"{entry['ratio']['median']:.2f}×"), row
    for name in ("sweep on a two-node local Ray cluster", "the main job"):    # skipped rows still listed
        assert any(r[0] == name and "skipped" in "".join(r) for r in rows), name


def test_hooks_see_the_extra_pass_of_the_plain_formula():
    """The counter would catch a regression: the plain objective takes 3 forwards and 3 backwards, the fast path 2."""
    model = make_model("maxout", torch.device("cpu")).train()
    x, y = make_batch(32, torch.device("cpu"))
    regularizer = Adversarial(alpha=0.5, eps=0.25)
    assert count_passes(model, lambda: regularizer.objective(model, x, y).backward()) == {"forwards": 3,
                                                                                          "backwards": 3}
    assert count_passes(model, lambda: regularizer.backward(model, x, y)) == {"forwards": 2, "backwards": 2}


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
    assert sweep["ok"] and sweep["slots"] == 2 and sweep["jobs"] == sweep["planned"] == 4
    assert len(sweep["jobs_per_node"]) == 2                       # both nodes trained jobs
    for run in (sweep, sweep["warm"]):
        assert 0 < run["efficiency_train_only"] < run["efficiency"]
        assert all(0 < j["job_seconds"] < run["wall_seconds"] + 1 for j in run["per_job"])
    assert sweep["judged"] is False and sweep["passed"] is None


def test_the_gpu_row_names_the_epoch_size_it_ran():
    """--quick times the GPU epoch on 6,000 examples: its row must not say 60,000."""
    epoch = {"examples": 6_000, "measured": {"seconds": {"median": 0.5}}, "reference": {"seconds": {"median": 0.4}},
             "ratio": {"median": 1.25}}
    report = {"comparisons": [], "counts": {}, "sweep": {"skipped": "-"}, "main_job": {"skipped": "-"},
              "gpu": {"maxout_epoch_60000": epoch, "packing": []}}
    gpu_row = next(line for line in markdown(report).splitlines() if line.startswith("| GPU: maxout epoch"))
    assert "6,000 × 784" in gpu_row and "60,000" not in gpu_row


def test_the_lightning_epoch_is_timed_through_the_modules_own_epoch_end_check():
    """The plain loop's time includes its loss check; the Lightning time must include the module's: on a diverged
    model the check raises before the timer stops, so no epoch is recorded (as the plain loop returns no time)."""
    from benchmarks.training import EpochTimer, lightning_epoch, plain_epoch, trainer_kwargs
    from pipeline.module import Diverged

    cpu = torch.device("cpu")
    x, y = make_batch(200, cpu)
    model = make_model("softmax", cpu)
    timer = EpochTimer()
    lightning_epoch(model, x, y, 100, trainer_kwargs(cpu), timer)
    assert len(timer.seconds) == 1 and timer.seconds[0] > 0
    with torch.no_grad():
        model.linear.weight.fill_(float("nan"))                 # the loss is NaN: the epoch-end check raises
    with pytest.raises(Diverged):
        lightning_epoch(model, x, y, 100, trainer_kwargs(cpu), timer)
    assert len(timer.seconds) == 1                               # the timer stopped after the check, not before
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
