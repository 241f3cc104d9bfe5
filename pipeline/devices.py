"""Which device a job or a stage's task computes on, and what metrics.json records about it.

In a Ray task the answer is Ray's: CUDA exactly when Ray assigned the task GPUs (`ray.get_gpu_ids()`), the CPU
otherwise. Ray 2.60 no longer hides the GPUs from a task that asked for none, so `torch.cuda.is_available()` alone
would put every such task on cuda:0, unmetered. Outside Ray (`jobs.train`, a SLURM array task) the config's
`trainer.accelerator` decides, as Lightning does.

A task that Ray gave GPUs CUDA cannot see fails (a cgroup hiding them from the step would otherwise train on the CPU
unnoticed); HARNESS_REQUIRE_CUDA=0 lets it run on the CPU instead (tests with fake GPUs, Ray's `--num-gpus` on a
machine without any).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator

import torch

from pipeline.cluster import ray_gpu_ids
from pipeline.errors import ConfigError

GPU_ACCELERATORS = ("auto", "gpu", "cuda")


def cuda_required() -> bool:
    return os.environ.get("HARNESS_REQUIRE_CUDA", "1") != "0"


def choose_accelerator(requested: str, gpu_ids: list[str] | None, cuda: bool, require_cuda: bool = True) -> str:
    """The Trainer's accelerator: `requested` outside Ray (gpu_ids None); in a Ray task "gpu" exactly when Ray
    assigned GPUs and "cpu" when it assigned none, unless `requested` names another device (e.g. cpu)."""
    if gpu_ids is None or requested not in GPU_ACCELERATORS:
        return requested
    if not gpu_ids:
        if requested != "auto":
            raise ConfigError(f"trainer.accelerator={requested} but Ray gave this task no GPU; ask for one "
                              "(resources.gpu or hydra.launcher.gpus > 0) or use trainer.accelerator=auto")
        return "cpu"
    if cuda:
        return "gpu"
    if require_cuda:
        raise RuntimeError(f"Ray assigned GPU {','.join(gpu_ids)} but CUDA sees no GPU here (CUDA_VISIBLE_DEVICES="
                           f"{os.environ.get('CUDA_VISIBLE_DEVICES')}): the node advertises GPUs its processes cannot "
                           "use; give them to the Ray step (srun --gres=gpu:N) or set HARNESS_REQUIRE_CUDA=0 to use "
                           "the CPU")
    return "cpu"


def job_accelerator(requested: str) -> str:
    """choose_accelerator for this process."""
    return choose_accelerator(requested, ray_gpu_ids(), torch.cuda.is_available(), cuda_required())


def task_device() -> torch.device:
    """Where a stage's task (transfer, evaluation) computes: the GPU Ray gave it, else the CPU (outside Ray: the
    GPU when there is one)."""
    use_gpu = job_accelerator("auto") in ("auto", "gpu") and torch.cuda.is_available()
    return torch.device("cuda", torch.cuda.current_device()) if use_gpu else torch.device("cpu")


def describe(device: torch.device) -> dict[str, Any]:
    """What metrics.json records about the device actually used: on CUDA its name, UUID and index as this process
    sees them (a reused worker's context stays on its first GPU whatever CUDA_VISIBLE_DEVICES says now), plus the
    GPU ids Ray assigned and what CUDA_VISIBLE_DEVICES says."""
    record: dict[str, Any] = {"device": str(device), "ray_gpu_ids": ray_gpu_ids(),
                              "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        properties = torch.cuda.get_device_properties(index)
        record.update(device_index=index, device_name=properties.name, device_uuid=str(properties.uuid))
    return record


def tf32_flags() -> dict[str, bool]:
    return {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32}


ATTACK_TF32 = {"matmul": False, "cudnn": False}   # what full_float32 sets (metrics.json records it)


@contextmanager
def full_float32() -> Iterator[None]:
    """Full float32 while attacking: cuDNN's TF32 (on by default) drops mantissa bits of a conv net's input
    gradient, so FGSM's signs on CUDA would disagree per example with the CPU's."""
    saved = tf32_flags()
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = ATTACK_TF32["matmul"], ATTACK_TF32["cudnn"]
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved["matmul"], saved["cudnn"]


def check_trainer(trainer: Any) -> None:
    """One job trains on one device in float32: refuse what would split it (DDP copies of the job, data apart from
    the model) or train in mixed precision (the regularizers' own backward passes and the attacks assume float32)."""
    devices = trainer.get("devices", 1)
    if devices not in (1, "1"):
        raise ConfigError(f"trainer.devices={devices!r}; a job trains on one device (1): run more jobs at once "
                          "instead (resources.gpu=0.25 packs four per GPU)")
    precision = trainer.get("precision", None)
    if precision not in (None, 32, "32", "32-true"):
        raise ConfigError(f"trainer.precision={precision!r}; only 32 is supported (adversarial training and the "
                          "attacks need float32 gradients)")
