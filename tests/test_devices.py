"""Where jobs compute and who trains them, checked without a GPU: Ray's GPU ids decide CUDA or CPU (fake GPUs on a
real local Ray), GPU tasks get fresh workers, the RBF start runs where the model lives, a job is one float32
process on one device, and SLURM array tasks started together on one fresh sweep folder do not trip over each other.
"""
from __future__ import annotations

import multiprocessing
import os

import pytest
import torch

from pipeline import store
from pipeline.devices import check_trainer, choose_accelerator
from pipeline.errors import ConfigError
from pipeline.models import RBF
from tests.support.configs import compose


# --- row 1: RBF's data-dependent start ------------------------------------------------------------------------------

def test_rbf_centers_start_at_the_class_means_on_the_models_device():
    x, y = torch.rand(30, 1, 4, 4), torch.tensor([0, 1] * 15)   # class 2 has no example: its center stays
    model = RBF((1, 4, 4), 3)
    untouched = model.centers[2].detach().clone()
    model.initialize(x, y)
    assert torch.allclose(model.centers[0], x[y == 0].flatten(1).mean(0), atol=1e-6)
    assert torch.allclose(model.centers[1], x[y == 1].flatten(1).mean(0), atol=1e-6)
    assert torch.equal(model.centers[2], untouched)

@pytest.mark.parametrize("images, labels", [("cpu", "meta"), ("meta", "meta"), ("meta", "cpu")])
def test_rbf_start_runs_on_the_models_device_whatever_the_datas(images, labels):
    """The meta device stands in for CUDA (shapes only, no values on the host): the start used to read a value back
    per class (`if (y == c).any()`), which fails there, and left the labels on their own device."""
    model = RBF((1, 4, 4), 3).to("meta")
    model.initialize(torch.rand(30, 1, 4, 4).to(images), torch.tensor([0, 1] * 15).to(labels))
    assert model.centers.device.type == "meta" and model.centers.shape == (3, 16)


# --- rows 2, 3: the device follows the GPUs Ray assigned ------------------------------------------------------------

@pytest.mark.parametrize("requested, gpu_ids, cuda, expected", [
    ("auto", None, True, "auto"),      # not a Ray task: Lightning decides
    ("auto", [], True, "cpu"),         # a zero-GPU task sees every GPU (Ray 2.60) but must not use one
    ("auto", ["1"], True, "gpu"),
    ("gpu", ["0"], True, "gpu"),
    ("cpu", ["0"], True, "cpu"),       # asked for explicitly
    ("auto", ["0"], False, "cpu"),     # fake GPUs (HARNESS_REQUIRE_CUDA=0)
])
def test_the_accelerator_is_cuda_exactly_when_ray_assigned_gpus(requested, gpu_ids, cuda, expected):
    assert choose_accelerator(requested, gpu_ids, cuda, require_cuda=False) == expected


def test_a_task_given_gpus_that_cuda_cannot_see_fails_instead_of_using_the_cpu():
    with pytest.raises(RuntimeError, match="CUDA sees no GPU"):
        choose_accelerator("auto", ["0"], cuda=False, require_cuda=True)
    with pytest.raises(ConfigError, match="no GPU"):
        choose_accelerator("gpu", [], cuda=True)


@pytest.fixture(scope="module")
def fake_gpu_ray():
    ray = pytest.importorskip("ray")
    from pipeline.cluster import connect

    connect(None, num_cpus=2, num_gpus=2, object_store_memory=80_000_000)
    yield ray
    ray.shutdown()


@pytest.mark.ray
@pytest.mark.slow   # a local Ray and four fresh workers
def test_ray_tasks_see_their_gpu_ids_and_gpu_tasks_never_share_a_worker(fake_gpu_ray):
    from pipeline.cluster import ray_gpu_ids
    from pipeline.cluster.tasks import run_tasks

    def where_am_i() -> tuple[int, list[str] | None]:   # local: sent by value, imports nothing heavy
        from pipeline.cluster import ray_gpu_ids

        return os.getpid(), ray_gpu_ids()

    assert ray_gpu_ids() is None   # the driver is not a task
    gpu = run_tasks("gpu", where_am_i, {str(i): () for i in range(4)}, cpus=0.5, gpus=0.5, poll_seconds=0.2)
    cpu = run_tasks("cpu", where_am_i, {str(i): () for i in range(4)}, cpus=1, gpus=0, poll_seconds=0.2)
    assert not gpu.failed and not cpu.failed
    pids, ids = zip(*gpu.results.values())
    assert all(len(i) == 1 and i[0] in ("0", "1") for i in ids)
    assert {choose_accelerator("auto", i, cuda=True) for i in ids} == {"gpu"}
    assert len(set(pids)) == 4                                  # max_calls=1: a fresh worker (CUDA context) per task
    pids, ids = zip(*cpu.results.values())
    assert ids == ([],) * 4 and choose_accelerator("auto", [], cuda=True) == "cpu"
    assert len(set(pids)) < 4                                   # CPU tasks keep reusing workers


# --- rows 7, 8: one job, one device, float32 ------------------------------------------------------------------------

@pytest.mark.parametrize("override, key", [("trainer.devices=2", "trainer.devices=2"),
                                           ("trainer.devices=[1]", "trainer.devices=[1]"),
                                           ("+trainer.precision=16-mixed", "trainer.precision='16-mixed'"),
                                           ("+trainer.precision=bf16-mixed", "trainer.precision='bf16-mixed'")])
def test_more_devices_or_mixed_precision_are_refused_in_one_line(override, key):
    cfg = compose("logger=none", override)
    with pytest.raises(ConfigError) as refused:
        check_trainer(cfg.trainer)
    assert str(refused.value).startswith(key) and "\n" not in str(refused.value)


def test_default_trainer_passes_and_precision_is_no_key_of_it():
    check_trainer(compose("logger=none").trainer)
    with pytest.raises(ConfigError, match="trainer.precision"):   # adding it would change every job id
        compose("trainer.precision=16-mixed")


# --- row 5: array tasks on one fresh sweep folder -------------------------------------------------------------------

ARRAY = ["experiment=smoke", "sweep.grid.model=softmax", "sweep.grid.regularizer=none",
         "sweep.overrides=['trainer.max_epochs=1','data.limit=100','logger=none','eval.epsilons=[0.0,0.25]']"]


def sweep(cfg) -> int:
    """run_sweep as `python -m jobs.sweep` runs it (inside Hydra)."""
    from pipeline.config import hydra_context
    from pipeline.stages.sweep import run_sweep

    with hydra_context():
        return run_sweep(cfg)


def _array_task(cfg, start, results) -> None:
    torch.set_num_threads(1)
    start.wait()
    try:
        results.put((int(cfg.task), sweep(cfg)))
    except BaseException as error:  # noqa: BLE001 - reported to the test
        results.put((int(cfg.task), repr(error)))


@pytest.mark.slow
def test_eight_array_tasks_started_at_once_on_a_fresh_sweep_folder(tmp_path):
    from omegaconf import OmegaConf

    from pipeline.stages.sweep_dir import LOG, PLAN

    sweep_dir = tmp_path / "sweep"
    cfg = compose(*ARRAY, "+sweep.grid.seed='range(8)'", f"dir={sweep_dir}", config_name="sweep")
    fork = multiprocessing.get_context("fork")
    start, results = fork.Barrier(8), fork.Queue()
    tasks = [fork.Process(target=_array_task, args=(OmegaConf.merge(cfg, {"task": i}), start, results))
             for i in range(8)]
    for task in tasks:
        task.start()
    outcomes = dict(results.get(timeout=600) for _ in tasks)
    for task in tasks:
        task.join(timeout=30)
    assert outcomes == {i: 0 for i in range(8)}
    plan = store.read_json(sweep_dir / PLAN)
    assert len(plan) == 8
    for entry in plan:
        directory = store.job_path(sweep_dir, entry["id"])
        assert store.is_complete(directory)
        assert [a["attempt"] for a in store.read_attempts(directory)] == [1]
    assert not list(sweep_dir.glob(".writable*"))
    # Nothing rewrites the plan of a sweep that ran: another task, plan_only.
    written = {name: (sweep_dir / name).stat().st_mtime_ns for name in (PLAN, "sweep.yaml")}
    log = (sweep_dir / LOG).read_text()
    assert sweep(OmegaConf.merge(cfg, {"task": 3})) == 0
    assert sweep(OmegaConf.merge(cfg, {"plan_only": True, "sweep": {"grid": {"seed": "range(2)"}}})) == 0
    assert {name: (sweep_dir / name).stat().st_mtime_ns for name in written} == written
    assert (sweep_dir / LOG).read_text().startswith(log)


@pytest.mark.slow
def test_a_job_held_by_another_process_is_left_to_it(tmp_path):
    from pipeline.config import hydra_context
    from pipeline.stages.plan import plan

    cfg = compose(*ARRAY, f"dir={tmp_path}", "task=0", config_name="sweep")

    with hydra_context():
        directory = store.job_path(tmp_path, plan(cfg.sweep, group=cfg.sweep.name)[0].id)
    with store.claim(directory):
        with pytest.raises(store.Busy, match=f"pid.*{os.getpid()}"):
            with store.claim(directory):
                pass
        assert sweep(cfg) == 0
    assert not store.is_complete(directory) and not store.read_attempts(directory)


# --- row 10: TF32 off while attacking ---------------------------------------------------------------------------------

def test_full_float32_turns_tf32_off_and_restores_the_flags():
    from pipeline.devices import full_float32, tf32_flags

    before = tf32_flags()
    torch.backends.cudnn.allow_tf32 = True   # PyTorch's default: cuDNN convolutions in TF32
    try:
        with full_float32():
            assert tf32_flags() == {"matmul": False, "cudnn": False}
        assert tf32_flags()["cudnn"] is True
    finally:
        torch.backends.cudnn.allow_tf32 = before["cudnn"]
