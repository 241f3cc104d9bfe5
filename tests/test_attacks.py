"""FGSM and PGD: the paper's closed form on logistic regression, invariances, side effects, other libraries."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from pipeline.attacks import FGSM, PGD, fgsm, fgsm_curve, pgd, predict
from pipeline.errors import ConfigError
from pipeline.models import Logistic, Maxout

W = torch.tensor([1.0, -2.0, 0.5, -0.1, 3.0, -0.7])


@pytest.fixture
def logistic() -> Logistic:
    """Binary logistic regression with hand-set weights (no zero weight, so every pixel moves)."""
    model = Logistic(input_shape=(len(W),), num_classes=2)
    with torch.no_grad():
        model.linear.weight.copy_(W.unsqueeze(0))
        model.linear.bias.fill_(-0.3)
    return model


@pytest.fixture
def pixels() -> torch.Tensor:
    return torch.rand(8, len(W), generator=torch.Generator().manual_seed(1)) * 0.6 + 0.2


@pytest.mark.parametrize("label, sign", [(0, 1.0), (1, -1.0)])
def test_fgsm_on_logistic_regression_is_the_hand_computed_step(logistic, pixels, label, sign):
    """J = softplus(∓z): ∇ₓJ = ±σ(±z)·w, so FGSM adds +ε·sign(w) for label 0 and −ε·sign(w) for label 1."""
    eps = 0.25
    y = torch.full((len(pixels),), label)
    adv = fgsm(logistic, pixels, y, eps, clip=None)
    assert torch.equal(adv, pixels + eps * (sign * W.sign()))
    torch.testing.assert_close(adv - pixels, (sign * eps * W.sign()).expand_as(pixels))


def test_fgsm_moves_every_pixel_by_exactly_eps(logistic, pixels):
    y = torch.tensor([0, 1] * 4)
    for eps in (0.1, 0.25, 0.3):
        delta = (fgsm(logistic, pixels, y, eps, clip=None) - pixels).abs()
        assert delta.max().item() == pytest.approx(eps, abs=1e-6)
        assert delta.min().item() == pytest.approx(eps, abs=1e-6)


def test_fgsm_with_eps_zero_returns_the_input(softmax, logistic, pixels):
    model, x, y = softmax
    assert torch.equal(fgsm(model, x, y, 0.0), x)
    assert torch.equal(fgsm(logistic, pixels, torch.zeros(8, dtype=torch.long), 0.0, clip=None), pixels)


def test_clipping_keeps_pixels_in_range(softmax):
    model, x, y = softmax
    unclipped = fgsm(model, x, y, 0.3, clip=None)
    assert unclipped.min() < 0 and unclipped.max() > 1          # the case clipping must handle occurs
    clipped = fgsm(model, x, y, 0.3)
    assert clipped.min() >= 0 and clipped.max() <= 1
    assert torch.equal(clipped, unclipped.clamp(0, 1))


def test_fgsm_curve_does_not_depend_on_batch_size(softmax):
    model, x, y = softmax
    model, x = model.double(), x.double()     # float64: no near-zero gradient component flips sign by rounding
    epsilons = [0.0, 0.05, 0.1, 0.25]
    whole = fgsm_curve(model, x, y, epsilons)
    batched = fgsm_curve(model, x, y, epsilons, batch_size=7)
    assert torch.equal(whole.predictions, batched.predictions)
    torch.testing.assert_close(whole.confidences, batched.confidences)
    torch.testing.assert_close(whole.error, batched.error)


def test_fgsm_on_one_example_equals_fgsm_in_a_batch(softmax):
    model, x, y = softmax
    model, x = model.double(), x[:50].double()
    batch = fgsm(model, x, y[:50], 0.1)
    for i in (0, 17, 49):
        torch.testing.assert_close(fgsm(model, x[i: i + 1], y[i: i + 1], 0.1), batch[i: i + 1], rtol=0, atol=1e-12)


def test_fgsm_curve_equals_fgsm_per_eps(softmax):
    model, x, y = softmax
    epsilons = [0.0, 0.1, 0.25]
    curve = fgsm_curve(model, x, y, epsilons)
    for k, eps in enumerate(epsilons):
        confidence, predicted = predict(model, fgsm(model, x, y, eps))
        assert torch.equal(curve.predictions[k], predicted)
        torch.testing.assert_close(curve.confidences[k], confidence)
        assert curve.error[k].item() == pytest.approx((predicted != y).float().mean().item())
    assert curve.error[0] < 0.2 < 0.9 < curve.error[-1]          # a trained model that FGSM fools


def test_attacks_leave_no_parameter_gradients_and_restore_requires_grad(softmax):
    model, x, y = softmax
    model.linear.bias.requires_grad_(False)                       # a mix of frozen and trainable parameters
    attacks = [lambda: fgsm(model, x, y, 0.1), lambda: fgsm_curve(model, x, y, [0.1]),
               lambda: pgd(model, x, y, 0.1, 0.05, 3), lambda: PGD(steps=2).curve(model, x, y, [0.1])]
    for attack in attacks:
        attack()
        assert all(p.grad is None for p in model.parameters())
        assert model.linear.weight.requires_grad and not model.linear.bias.requires_grad


@pytest.mark.parametrize("training", [True, False])
def test_attacks_run_in_eval_mode_and_restore_the_mode(softmax_model, training):
    _, x, y = softmax_model
    torch.manual_seed(0)
    model = Maxout(x.shape[1:], 10, units=16, pieces=2, input_dropout=0.5, hidden_dropout=0.5)
    model.train(training)
    reference = fgsm(copy.deepcopy(model).eval(), x, y, 0.1)
    for attack in (lambda: fgsm(model, x, y, 0.1), lambda: pgd(model, x, y, 0.1, 0.1, 1, random_start=False),
                   lambda: fgsm_curve(model, x, y, [0.1])):
        result = attack()
        if isinstance(result, torch.Tensor):
            assert torch.equal(result, reference)                 # no dropout: the attack ran in eval mode
        assert model.training is training
        assert all(m.training is training for m in model.modules())


def test_no_labels_crafts_with_the_models_predictions(softmax):
    model, x, y = softmax
    with torch.no_grad():
        predicted = model(x).argmax(dim=1)
    assert (predicted != y).any()                                  # the two label choices differ somewhere
    assert torch.equal(fgsm(model, x, None, 0.1), fgsm(model, x, predicted, 0.1))
    assert not torch.equal(fgsm(model, x, None, 0.1), fgsm(model, x, y, 0.1))
    curve = fgsm_curve(model, x, y, [0.1], craft_with="predicted")
    assert torch.equal(curve.predictions[0], predict(model, fgsm(model, x, predicted, 0.1))[1])


@pytest.mark.parametrize("clip", [(0.0, 1.0), None])
def test_pgd_with_one_full_step_and_no_random_start_is_fgsm(softmax, clip):
    model, x, y = softmax
    for eps in (0.05, 0.25):
        assert torch.equal(pgd(model, x, y, eps, step_size=eps, steps=1, random_start=False, clip=clip),
                           fgsm(model, x, y, eps, clip=clip))
    assert torch.equal(pgd(model, x, None, 0.1, 0.1, 1, random_start=False), fgsm(model, x, None, 0.1))


def test_pgd_is_at_least_as_strong_as_fgsm(softmax):
    model, x, y = softmax
    epsilons = [0.05, 0.1, 0.25]
    fgsm_error = FGSM().curve(model, x, y, epsilons).error
    pgd_error = PGD(steps=10, step_fraction=0.25).curve(model, x, y, epsilons).error
    for eps, f, p in zip(epsilons, fgsm_error.tolist(), pgd_error.tolist()):
        assert p >= f, f"ε={eps}: PGD error {p:.3f} below FGSM error {f:.3f}"


def test_pgd_attack_counts_every_example_fgsm_fools(softmax):
    model, x, y = softmax
    epsilons = [0.05, 0.1]
    fast = FGSM().curve(model, x, y, epsilons)
    strong = PGD(steps=3).curve(model, x, y, epsilons)
    assert (strong.wrong | ~fast.wrong).all()                      # per example, not only on average
    pure = PGD(steps=3, with_fgsm=False).curve(model, x, y, epsilons)
    generator = torch.Generator().manual_seed(0)
    for k, eps in enumerate(epsilons):                            # with_fgsm=False is plain pgd()
        adv = pgd(model, x, y, eps, 0.25 * eps, 3, generator=generator)
        assert torch.equal(pure.predictions[k], predict(model, adv)[1])
    one_step = PGD(steps=1, step_fraction=1.0, random_start=False, with_fgsm=False).curve(model, x, y, epsilons)
    assert torch.equal(one_step.predictions, fast.predictions)


@pytest.mark.parametrize("clip", [(0.0, 1.0), None])
def test_pgd_stays_in_the_eps_ball(softmax, clip):
    model, x, y = softmax
    generator = torch.Generator().manual_seed(0)
    adv = pgd(model, x, y, 0.1, step_size=0.05, steps=5, random_start=True, restarts=2, clip=clip,
              generator=generator)
    assert (adv - x).abs().max().item() <= 0.1 + 1e-6
    assert (adv - x).abs().max().item() > 0.09                    # it does move
    if clip is not None:
        assert adv.min() >= 0 and adv.max() <= 1


@pytest.mark.parametrize("kwargs, name", [(dict(steps=0), "steps"), (dict(step_size=0.0), "step_size"),
                                          (dict(step_size=-0.1), "step_size"), (dict(restarts=0), "restarts")])
def test_pgd_refuses_bad_steps(softmax, kwargs, name):
    model, x, y = softmax
    arguments = dict(eps=0.1, step_size=0.05, steps=3) | kwargs
    with pytest.raises(ConfigError, match=name):
        pgd(model, x, y, **arguments)


@pytest.mark.parametrize("kwargs, value", [(dict(steps=0), "steps=0"), (dict(step_fraction=-1.0), "-1.0"),
                                           (dict(restarts=0), "restarts=0")])
def test_pgd_attack_refuses_bad_settings(kwargs, value):
    with pytest.raises(ConfigError, match=value):
        PGD(**kwargs)


@pytest.mark.parametrize("eps", [-0.1, float("nan")])
def test_negative_eps_is_refused(softmax, eps):
    model, x, y = softmax
    with pytest.raises(ConfigError, match=str(eps)):
        fgsm(model, x, y, eps)
    with pytest.raises(ConfigError, match=str(eps)):
        fgsm_curve(model, x, y, [0.1, eps])


def test_fgsm_matches_torchattacks(softmax_model):
    torchattacks = pytest.importorskip("torchattacks")
    _, x, y = softmax_model
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.Tanh(), nn.Linear(32, 10)).eval()
    for eps in (0.05, 0.25):
        theirs = torchattacks.FGSM(model, eps=eps)(x, y)
        ours = fgsm(model, x, y, eps)                              # torchattacks clamps to [0, 1], as does clip
        assert torch.allclose(ours, theirs, atol=1e-6)
        assert not torch.allclose(ours, x)
