"""What the benchmark's count rows show, held here once (the benchmark measures, it does not judge): passes of the
adversarial step and of the FGSM curve, and input gradients of the transfer stage, counted by hooks on the models."""
from __future__ import annotations

import pytest
import torch

from benchmarks.gpu_check import MODELS
from benchmarks.passes import PassCounter, count_passes
from benchmarks.workload import make_batch, make_model
from pipeline.regularizers import Adversarial

CPU = torch.device("cpu")


def test_the_adversarial_step_takes_two_passes_and_the_plain_formula_three():
    """The counter would catch a regression: the plain objective takes 3 forwards and 3 backwards, the fast path 2."""
    model = make_model("maxout", CPU).train()
    x, y = make_batch(32, CPU)
    regularizer = Adversarial(alpha=0.5, eps=0.25)
    assert count_passes(model, lambda: regularizer.objective(model, x, y).backward()) == {"forwards": 3,
                                                                                          "backwards": 3}
    assert count_passes(model, lambda: regularizer.backward(model, x, y)) == {"forwards": 2, "backwards": 2}


def test_the_fgsm_curve_takes_one_gradient_for_every_eps():
    """One forward and backward for the gradient, then a scoring forward per ε (torchattacks: 2 and 1 per ε)."""
    from pipeline.attacks import fgsm_curve

    model = make_model("softmax", CPU).eval()
    x, y = make_batch(50, CPU)
    epsilons = [0.1, 0.2, 0.3]
    assert count_passes(model, lambda: fgsm_curve(model, x, y, epsilons)) == {"forwards": 1 + len(epsilons),
                                                                              "backwards": 1}


def test_the_transfer_stage_takes_one_input_gradient_per_source():
    """M models that attack each other at K ε on a test set of one batch: M input gradients, as reported and as
    hooks on the models see them, for M × M × K rows."""
    from pipeline.attacks import transfer_rows

    models = {f"m{i}": make_model(kind, CPU, seed=i).eval() for i, kind in enumerate(("softmax", "maxout", "softmax"))}
    x, y = make_batch(100, CPU)
    counters = [PassCounter(model) for model in models.values()]
    reported, rows = 0, 0
    for name, model in models.items():
        found, gradients = transfer_rows(name, model, models, x, y, [0.1, 0.25], (0.0, 1.0), "true", 1000)
        reported, rows = reported + gradients, rows + len(found)
    assert reported == sum(c.backwards for c in counters) == len(models)
    assert rows == len(models) ** 2 * 2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (CUDA)")
@pytest.mark.parametrize("model", list(MODELS))
def test_every_model_of_the_gpu_check_trains_on_the_gpu(model, tmp_path):
    """The GPU check's jobs name the device they ran on; here each must be the GPU."""
    from benchmarks.gpu_check import QUICK_SCALE, job_config, write_data
    from pipeline.training.job import run_job

    write_data(tmp_path, QUICK_SCALE)
    metrics = run_job(job_config(model, "cuda", tmp_path), tmp_path / "job")
    assert metrics["device"].startswith("cuda") and metrics["device_name"]
