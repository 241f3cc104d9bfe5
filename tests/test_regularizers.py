"""Training objectives: the adversarial objective against its formula, the fast backward against autograd,
penalties against their formulas, noise within its bounds, bad settings refused."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from pipeline.errors import ConfigError
from pipeline.models import Maxout
from pipeline.regularizers import L1, Adversarial, Regularizer, SignNoise, UniformNoise, WeightDecay


@pytest.fixture
def batch(softmax_model):
    _, x, y = softmax_model
    return x[:64], y[:64]


def hand_objective(model, x, y, alpha, eps, craft_labels):
    """α·J(x, y) + (1 − α)·J(x + ε·sign ∇ₓJ(x, craft_labels), y), J the mean cross-entropy, written out."""
    x_var = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x_var), craft_labels), x_var)
    x_adv = x + eps * grad.sign()
    return alpha * F.cross_entropy(model(x), y) + (1 - alpha) * F.cross_entropy(model(x_adv), y)


@pytest.mark.parametrize("labels", ["true", "predicted"])
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_adversarial_objective_equals_the_formula(softmax, alpha, labels):
    model, x, y = softmax
    x, y = x[:64], y[:64]
    craft = y if labels == "true" else model(x).argmax(dim=1).detach()
    if labels == "predicted":
        assert not torch.equal(craft, y)                          # the two cases differ on this batch
    regularizer = Adversarial(alpha=alpha, eps=0.25, labels=labels)
    expected = hand_objective(model, x, y, alpha, 0.25, craft).detach()
    torch.testing.assert_close(regularizer.objective(model, x, y).detach(), expected)
    assert all(p.grad is None for p in model.parameters())      # crafting leaves no parameter gradients


def make_model(kind: str, trained: torch.nn.Module) -> torch.nn.Module:
    """The trained softmax, or a maxout net; in eval mode (no dropout), so both paths see the same function."""
    torch.manual_seed(0)
    return (Maxout(trained.input_shape, 10, units=16, pieces=3) if kind == "maxout" else trained).eval()


@pytest.mark.parametrize("kind", ["softmax", "maxout"])
@pytest.mark.parametrize("labels", ["true", "predicted"])
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_fast_backward_matches_autograd_on_the_objective(softmax, kind, alpha, labels):
    trained, x, y = softmax
    x, y = x[:64], y[:64]
    model = make_model(kind, trained)
    slow, fast = copy.deepcopy(model), copy.deepcopy(model)
    regularizer = Adversarial(alpha=alpha, eps=0.25, labels=labels)
    value = regularizer.objective(slow, x, y)
    value.backward()
    fast_value = regularizer.backward(fast, x, y)
    torch.testing.assert_close(fast_value, value.detach())
    for (name, p_slow), p_fast in zip(slow.named_parameters(), fast.parameters()):
        assert p_fast.grad is not None, name
        torch.testing.assert_close(p_fast.grad, p_slow.grad, rtol=1e-5, atol=1e-7, msg=name)
    assert any(p.grad.abs().sum() > 0 for p in fast.parameters())


def test_fast_backward_accumulates_into_existing_gradients(softmax):
    model, x, y = softmax
    x, y = x[:64], y[:64]
    regularizer = Adversarial(alpha=0.5, eps=0.1)
    regularizer.backward(model, x, y)
    once = [p.grad.clone() for p in model.parameters()]
    regularizer.backward(model, x, y)
    for p, g in zip(model.parameters(), once):
        torch.testing.assert_close(p.grad, 2 * g)


def count_forwards(model: torch.nn.Module) -> list[int]:
    calls = [0]
    model.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize("labels", ["true", "predicted"])
def test_fast_backward_uses_two_forward_passes_and_the_objective_three(softmax, labels):
    model, x, y = softmax
    x, y = x[:64], y[:64]
    regularizer = Adversarial(alpha=0.5, eps=0.25, labels=labels)
    calls = count_forwards(model)
    regularizer.backward(model, x, y)
    assert calls[0] == 2
    calls[0] = 0
    regularizer.objective(model, x, y).backward()
    assert calls[0] == 3


def test_l1_penalty_is_the_first_layers_absolute_weight_sum(softmax_model):
    _, x, _ = softmax_model
    torch.manual_seed(0)
    model = Maxout(x.shape[1:], 10, units=16, pieces=3)
    first = model.net[2].linear.weight
    torch.testing.assert_close(L1(coefficient=0.0025).penalty(model), 0.0025 * first.abs().sum())
    every = sum(p.abs().sum() for p in model.parameters() if p.ndim > 1)
    torch.testing.assert_close(L1(coefficient=0.01, layers="all").penalty(model), 0.01 * every)
    assert every > first.abs().sum()                                  # the two options differ
    x, y = x[:32], torch.arange(32) % 10
    model.eval()
    torch.testing.assert_close(L1(coefficient=0.0025).objective(model, x, y),
                               F.cross_entropy(model(x), y) + 0.0025 * first.abs().sum())


def test_weight_decay_penalty_is_the_formula(softmax):
    model, x, y = softmax
    expected = 5e-4 * model.linear.weight.pow(2).sum()                    # biases excluded
    torch.testing.assert_close(WeightDecay(5e-4).penalty(model), expected)
    torch.testing.assert_close(WeightDecay(5e-4).objective(model, x, y), F.cross_entropy(model(x), y) + expected)


def test_no_regularizer_is_the_plain_cost(softmax):
    model, x, y = softmax
    torch.testing.assert_close(Regularizer().objective(model, x, y), F.cross_entropy(model(x), y))


def test_sign_noise_moves_every_pixel_by_eps(batch):
    x, _ = batch
    torch.manual_seed(0)
    delta = SignNoise(eps=0.25).transform(x) - x
    torch.testing.assert_close(delta.abs(), torch.full_like(x, 0.25))
    assert 0.45 < (delta > 0).float().mean() < 0.55                         # signs drawn at random
    clipped = SignNoise(eps=0.25, clip=[0.0, 1.0]).transform(x)
    assert clipped.min() >= 0 and clipped.max() <= 1


def test_uniform_noise_stays_within_eps(batch):
    x, _ = batch
    torch.manual_seed(0)
    delta = UniformNoise(eps=0.25).transform(x) - x
    assert delta.abs().max() <= 0.25 + 1e-6
    assert delta.abs().max() > 0.24 and delta.abs().mean() < 0.15           # spread over the interval
    assert not torch.equal(UniformNoise(eps=0.25).transform(x), UniformNoise(eps=0.25).transform(x))


@pytest.mark.parametrize("build, value", [
    (lambda: Adversarial(alpha=1.5), "alpha=1.5"), (lambda: Adversarial(alpha=-0.5), "alpha=-0.5"),
    (lambda: Adversarial(eps=-0.1), "eps=-0.1"), (lambda: SignNoise(eps=-0.1), "eps=-0.1"),
    (lambda: UniformNoise(eps=-0.2), "eps=-0.2"), (lambda: Adversarial(labels="nosuch"), "nosuch"),
    (lambda: L1(coefficient=-1.0), "coefficient=-1.0"), (lambda: L1(layers="nosuch"), "nosuch"),
    (lambda: WeightDecay(coefficient=-1.0), "coefficient=-1.0")])
def test_bad_settings_are_refused_naming_the_value(build, value):
    with pytest.raises(ConfigError, match=value):
        build()


@pytest.mark.slow
def test_l1_on_the_first_layer_of_a_model_without_one_is_refused_before_training(tmp_path):
    """RBF has no first layer (centers and widths per class): `jobs.train` stops with one line before training."""
    from tests.support.commands import run_command

    result = run_command(["jobs.train", "model=rbf", "regularizer=l1", "logger=none", f"hydra.run.dir={tmp_path}"])
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith("error: ") and "regularizer.layers=first" in lines[0] and "RBF" in lines[0]
    assert not (tmp_path / "metrics.json").exists()
