"""What only a GPU shows (skipped without CUDA, counted as skipped): a job on the GPU says which one, FGSM on a conv
net agrees with the CPU in attack mode, and training batches never wait for the host."""
from __future__ import annotations

import pytest
import torch

from tests.support.configs import compose

pytestmark = pytest.mark.gpu

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (CUDA)")


@requires_cuda
def test_an_rbf_job_trains_on_the_gpu_and_metrics_name_it(tmp_path):
    from pipeline.training.job import run_job

    metrics = run_job(compose("model=rbf", "optimizer=adam", "logger=none", "trainer.max_epochs=1", "data.limit=200"),
                      tmp_path)
    assert metrics["device"].startswith("cuda") and metrics["device_uuid"] and metrics["device_name"]
    assert metrics["device_index"] == torch.cuda.current_device()
    assert metrics["tf32"]["attack"] == {"matmul": False, "cudnn": False}


@requires_cuda
def test_fgsm_on_a_conv_net_agrees_with_the_cpu_in_full_float32():
    from pipeline.attacks import fgsm
    from pipeline.devices import full_float32
    from pipeline.models import Conv

    torch.manual_seed(0)
    model = Conv((3, 32, 32), 10).eval()
    x, y = torch.rand(500, 3, 32, 32), torch.randint(0, 10, (500,))
    with full_float32():
        on_cpu = fgsm(model, x, y, 0.1)
        on_gpu = fgsm(model.cuda(), x.cuda(), y.cuda(), 0.1).cpu()
    assert (on_cpu == on_gpu).float().mean() > 0.999


@requires_cuda
def test_training_batches_do_not_sync_with_the_host():
    from pipeline.data import TensorBatches

    x, y = torch.rand(1000, 784, device="cuda"), torch.randint(0, 10, (1000,), device="cuda")
    batches = iter(TensorBatches(x, y, batch_size=100, shuffle=True, seed=0))
    next(batches)   # the epoch's permutation goes to the GPU here, once
    torch.cuda.set_sync_debug_mode("error")
    try:
        assert len([b for b in batches]) == 9
    finally:
        torch.cuda.set_sync_debug_mode(0)
