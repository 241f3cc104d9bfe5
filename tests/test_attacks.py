"""FGSM, PGD and APGD-CE: the paper's closed form on logistic regression, invariances, side effects, other libraries
(torchattacks' FGSM, PGD and APGD on a trained maxout network)."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from pipeline.attacks import APGD, FGSM, PGD, Draws, Exact, apgd, autoattack, fgsm, fgsm_curve, pgd, predict, worst_case
from tests.support.training import train_sgd
from pipeline.errors import ConfigError
from pipeline.models import Logistic, Maxout
from pipeline.regularizers import Adversarial, Regularizer

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


def fit_maxout(x: torch.Tensor, y: torch.Tensor, regularizer: Regularizer, epochs: int = 4) -> Maxout:
    """A small maxout net (64 units × 5 pieces, the paper's dropout and max-norm) trained with plain SGD on the
    regularizer's objective, as a job's training step does."""
    return train_sgd(lambda: Maxout(x.shape[1:], 10, units=64, pieces=5), x, y, regularizer, epochs)


@pytest.fixture(scope="module")
def maxouts(mnist_splits) -> dict[str, tuple[Maxout, torch.Tensor, torch.Tensor]]:
    """A naive and an adversarially trained (α = .5, ε = .25) maxout net, each with 500 test digits."""
    (x, y), (x_test, y_test) = mnist_splits
    models = {"naive": fit_maxout(x, y, Regularizer()), "adversarial": fit_maxout(x, y, Adversarial(0.5, 0.25))}
    return {name: (model, x_test[:500], y_test[:500]) for name, model in models.items()}


def error_rate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((predict(model, x)[1] != y).float().mean())


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
    reference_curve = fgsm_curve(copy.deepcopy(model).eval(), x, y, [0.1])
    for attack in (lambda: fgsm(model, x, y, 0.1), lambda: pgd(model, x, y, 0.1, 0.1, 1, random_start=False),
                   lambda: fgsm_curve(model, x, y, [0.1])):
        result = attack()
        if isinstance(result, torch.Tensor):
            assert torch.equal(result, reference)                 # no dropout: the attack ran in eval mode
        else:                                                     # the curve: its predictions without dropout
            assert torch.equal(result.predictions, reference_curve.predictions)
            torch.testing.assert_close(result.confidences, reference_curve.confidences)
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


@pytest.mark.slow
def test_pgd_alone_is_at_least_as_strong_as_fgsm_on_a_trained_maxout(maxouts):
    """PGD alone (with_fgsm=False, no random start: nothing of FGSM's kept) on a naive maxout, at radii where FGSM
    fools some digits and not others (on a model trained against FGSM, PGD alone can fall below it: masking)."""
    model, x, y = maxouts["naive"]
    epsilons = [0.05, 0.1]
    fgsm_error = FGSM().curve(model, x, y, epsilons).error
    pgd_alone = PGD(steps=10, step_fraction=0.25, random_start=False, with_fgsm=False)
    pgd_error = pgd_alone.curve(model, x, y, epsilons).error
    for eps, f, p in zip(epsilons, fgsm_error.tolist(), pgd_error.tolist()):
        assert 0.1 < f < 0.9, f"ε={eps}: FGSM error {f:.3f} leaves PGD no room to differ"
        assert p >= f, f"ε={eps}: PGD error {p:.3f} below FGSM error {f:.3f}"


def test_pgd_attack_counts_every_example_fgsm_fools(softmax):
    model, x, y = softmax
    epsilons = [0.05, 0.1]
    fast = FGSM().curve(model, x, y, epsilons)
    strong = PGD(steps=3).curve(model, x, y, epsilons)
    assert (strong.wrong | ~fast.wrong).all()                      # per example, not only on average
    plain = PGD(steps=3, with_fgsm=False)
    pure = plain.curve(model, x, y, epsilons)
    for k, eps in enumerate(epsilons):            # with_fgsm=False is plain pgd() on the attack's own stream at ε
        adv = pgd(model, x, y, eps, 0.25 * eps, 3, draws=plain.draws(eps, range(len(x))))
        assert torch.equal(pure.predictions[k], predict(model, adv)[1])
    one_step = PGD(steps=1, step_fraction=1.0, random_start=False, with_fgsm=False).curve(model, x, y, epsilons)
    assert torch.equal(one_step.predictions, fast.predictions)


@pytest.mark.parametrize("attack", [PGD(steps=3, with_fgsm=False), APGD(steps=10)], ids=["pgd", "apgd"])
def test_random_starts_do_not_depend_on_the_batch_or_shard(softmax, attack):
    """Each example's random start comes from its own stream, seeded by its index in the evaluated set: the set
    attacked whole, in batches of 7, or as two shards given their indices gives every example the same point
    (float64: no sign flips by rounding); a shard not given its indices draws other starts."""
    model, x, y = softmax
    model, x, half = copy.deepcopy(model).double(), x.double(), len(x) // 2
    whole = attack.perturb(model, x, y, 0.1)
    batched = attack.curve(model, x, y, [0.1], batch_size=7)
    assert torch.equal(batched.predictions[0], predict(model, whole)[1])
    shards = [attack.perturb(model, x[:half], y[:half], 0.1, attack.draws(0.1, range(half))),
              attack.perturb(model, x[half:], y[half:], 0.1, attack.draws(0.1, range(half, len(x))))]
    assert torch.equal(torch.cat(shards), whole)
    assert not torch.equal(attack.perturb(model, x[half:], y[half:], 0.1), whole[half:])


@pytest.mark.parametrize("clip", [(0.0, 1.0), None])
def test_pgd_stays_in_the_eps_ball(softmax, clip):
    model, x, y = softmax
    adv = pgd(model, x, y, 0.1, step_size=0.05, steps=5, random_start=True, restarts=2, clip=clip,
              draws=Draws(0, range(len(x))))
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


RADII = [("naive", (0.05, 0.1)), ("adversarial", (0.1, 0.25))]   # where FGSM fools some digits, not all


@pytest.mark.slow
@pytest.mark.parametrize("kind, radii", RADII)
def test_pgd_matches_torchattacks_on_a_trained_maxout(maxouts, kind, radii):
    """Same ε, steps and step size, no random start, clipped to [0, 1]: error rates within 2 points."""
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = maxouts[kind]
    for eps in radii:
        ours = PGD(steps=10, step_fraction=0.25, random_start=False, with_fgsm=False).curve(model, x, y, [eps])
        theirs = torchattacks.PGD(model, eps=eps, alpha=eps / 4, steps=10, random_start=False)(x, y)
        assert 0.1 < error_rate(model, theirs, y) < 0.99                  # a radius where the two can disagree
        assert abs(float(ours.error[0]) - error_rate(model, theirs, y)) <= 0.02, eps


@pytest.mark.slow
@pytest.mark.parametrize("kind, radii", RADII)
def test_apgd_matches_torchattacks_on_a_trained_maxout(maxouts, kind, radii):
    """APGD-CE against torchattacks' APGD (cross-entropy, one restart, their own random start): error rates within
    2 points, and at least PGD's (same steps, alone) less 2 points."""
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = maxouts[kind]
    for eps in radii:
        ours = float(APGD(steps=20).curve(model, x, y, [eps]).error[0])
        theirs = error_rate(model, torchattacks.APGD(model, norm="Linf", eps=eps, steps=20, loss="ce", seed=0)(x, y), y)
        pgd_alone = float(PGD(steps=20, step_fraction=0.25, with_fgsm=False).curve(model, x, y, [eps]).error[0])
        assert 0.1 < theirs < 0.99 and abs(ours - theirs) <= 0.02, (eps, ours, theirs)
        assert ours >= pgd_alone - 0.02, (eps, ours, pgd_alone)


@pytest.mark.slow
@pytest.mark.parametrize("kind, eps", [("naive", 0.1), ("adversarial", 0.25)])   # at .25 the naive net is all fooled
def test_apgd_matches_autoattacks_apgd_ce_on_a_trained_maxout(maxouts, kind, eps):
    """Our APGD-CE against the reference's (pyautoattack, APGD-CE alone: 100 steps, one restart), clipped to
    [0, 1], on 200 digits: error rates within 1 point."""
    model, x, y = maxouts[kind]
    x, y = x[:200], y[:200]
    ours = float(APGD(steps=100, restarts=1).curve(model, x, y, [eps]).error[0])
    _, fooled_by, _ = autoattack(model, x, y, eps, components=("apgd-ce",))
    theirs = float(((predict(model, x)[1] != y) | fooled_by["apgd-ce"]).float().mean())
    assert 0.1 < theirs < 0.99 and abs(ours - theirs) <= 0.01, (ours, theirs)


def test_apgd_on_logistic_regression_ends_at_the_fgsm_corner(logistic, pixels):
    """J grows monotonely along ±sign(w), so over the ball it peaks at FGSM's corner x ± ε·sign(w), the point of
    least margin: a digit the corner does not fool is fooled nowhere in the ball, and APGD returns that corner (its
    point of highest cost; its first step, 2ε, reaches it from any start); a digit the corner fools, APGD fools.
    Digits the model already gets wrong come back unchanged."""
    y = torch.tensor([0, 1] * 4)
    wrong = predict(logistic, pixels)[1] != y
    corner = pixels + 0.05 * torch.where(y[:, None] == 0, 1.0, -1.0) * W.sign()   # by hand: J = softplus(∓z)
    adv = apgd(logistic, pixels, y, 0.05, steps=10, clip=None, draws=Draws(0, range(len(y))))
    robust = (predict(logistic, corner)[1] == y) & ~wrong
    assert robust.any() and (~robust & ~wrong).any() and wrong.any()
    torch.testing.assert_close(adv[robust], corner[robust], rtol=0, atol=1e-6)   # start + 2ε may round 1 ulp short
    assert torch.equal(adv[wrong], pixels[wrong])
    assert (predict(logistic, adv)[1] != y)[~robust].all()


def test_apgd_with_eps_zero_returns_the_input(softmax):
    model, x, y = softmax
    assert torch.equal(apgd(model, x, y, 0.0, steps=5), x)


@pytest.mark.parametrize("clip", [(0.0, 1.0), None])
def test_apgd_stays_in_the_eps_ball(softmax, clip):
    model, x, y = softmax
    adv = apgd(model, x, y, 0.1, steps=10, restarts=2, clip=clip, draws=Draws(0, range(len(x))))
    assert (adv - x).abs().max().item() <= 0.1 + 1e-6
    assert (adv - x).abs().max().item() > 0.09
    if clip is not None:
        assert adv.min() >= 0 and adv.max() <= 1
    else:
        assert adv.min() < 0 or adv.max() > 1                    # unclipped it does leave the pixel range


@pytest.mark.slow
def test_apgd_on_one_example_does_not_depend_on_the_rest_of_the_batch(maxouts):
    """Step sizes, checkpoints and costs are per example, and example i's random start comes from its own stream
    (seeded by its index): digits 40-79 attacked alone equal the same digits attacked among 200 (float64: no sign
    flips by rounding)."""
    model, x, y = maxouts["adversarial"]
    model, x = copy.deepcopy(model).double(), x[:200].double()
    whole = apgd(model, x, y[:200], 0.1, steps=20, draws=Draws(3, range(200)))
    part = apgd(model, x[40:80], y[40:80], 0.1, steps=20, draws=Draws(3, range(40, 80)))
    assert torch.equal(part, whole[40:80])
    assert (predict(model, whole)[1] != y[:200]).float().mean() > (predict(model, x)[1] != y[:200]).float().mean()


@pytest.mark.parametrize("training", [True, False])
def test_apgd_runs_in_eval_mode_restores_the_mode_and_leaves_no_gradients(maxouts, training):
    model, x, y = maxouts["naive"]
    model = copy.deepcopy(model).train(training)
    reference = apgd(copy.deepcopy(model).eval(), x[:100], y[:100], 0.1, steps=5, draws=Draws(0, range(100)))
    adv = apgd(model, x[:100], y[:100], 0.1, steps=5, draws=Draws(0, range(100)))
    assert torch.equal(adv, reference)                           # no dropout: it ran in eval mode
    assert all(m.training is training for m in model.modules())
    assert all(p.grad is None and p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("kwargs, value", [(dict(steps=0), "steps=0"), (dict(restarts=0), "restarts=0"),
                                           (dict(rho=1.5), "rho=1.5")])
def test_apgd_refuses_bad_settings(kwargs, value):
    with pytest.raises(ConfigError, match=value):
        APGD(**kwargs)


def test_attack_apgd_is_an_option_of_the_attack_group():
    from tests.support.configs import compose
    from pipeline.config import instantiate

    attack = instantiate(compose("attack=apgd", "attack.steps=7").attack, "attack")
    assert isinstance(attack, APGD) and attack.name == "apgd" and attack.steps == 7 and attack.clip == (0.0, 1.0)


@pytest.fixture(scope="module")
def logistic_3v7(digits) -> tuple[Logistic, torch.Tensor, torch.Tensor]:
    """The paper's 3-vs-7 logistic regression (Fig. 2), trained briefly, and 300 held-out digits."""
    x, y = digits
    keep = (y == 3) | (y == 7)
    x, y = x[keep], (y[keep] == 7).long()
    torch.manual_seed(0)
    model = Logistic(x.shape[1:], 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        for index in torch.randperm(len(y) - 300).split(50):
            optimizer.zero_grad()
            model.loss(x[index], y[index]).backward()
            optimizer.step()
    return model.eval(), x[-300:], y[-300:]


@pytest.mark.parametrize("clip", [(0.0, 1.0), None])
def test_fgsm_is_the_exact_worst_case_of_binary_logistic_regression(logistic_3v7, clip):
    """The paper's argument: for a linear binary model ε·sign(w) is optimal, so FGSM's point is the exact one on
    every digit the model gets right, and their error rates are equal at every ε."""
    model, x, y = logistic_3v7
    right = predict(model, x)[1] == y
    errors = []
    for eps in (0.02, 0.05, 0.1):
        exact = Exact(clip=clip).curve(model, x, y, [eps])
        assert float(exact.error[0]) == float(FGSM(clip=clip).curve(model, x, y, [eps]).error[0])
        assert torch.equal(worst_case(model, x, y, eps, clip)[right], fgsm(model, x, y, eps, clip)[right])
        errors.append(float(exact.error[0]))
    assert 0.02 < errors[0] < errors[-1] < 1.0, errors          # radii where the answer is not trivial


@pytest.mark.slow
def test_attacks_reach_but_never_pass_the_exact_worst_case_of_softmax_regression(softmax):
    """Exact is the ceiling: no attack, nor random points of the box, fools an example it does not. AutoAttack's
    gradient attacks (the reference APGD-CE, then APGD-T on each wrong class) reach it within 0.5 points on a
    trained softmax regression; our APGD-CE alone does not (cross-entropy is not the margin to the nearest class:
    it falls 1-4 points short at ε = .03-.1, as `strongest` fell short of AutoAttack on the adversarially trained
    softmax)."""
    model, x, y = softmax
    x, y = x[:100], y[:100]
    for eps in (0.06,):
        exact = Exact().curve(model, x, y, [eps]).wrong[0]
        assert 0.1 < float(exact.float().mean()) < 0.95, eps
        apgd_wrong = APGD(steps=50).curve(model, x, y, [eps]).wrong[0]
        _, fooled_by, _ = autoattack(model, x, y, eps, version="standard", components=("apgd-ce", "apgd-t"))
        autoattack_wrong = (predict(model, x)[1] != y) | torch.stack(list(fooled_by.values())).any(dim=0)
        noise = (torch.rand((20, *x.shape), generator=torch.Generator().manual_seed(0)) * 2 - 1) * eps
        random_wrong = torch.stack([predict(model, (x + n).clamp(0, 1))[1] != y for n in noise]).any(dim=0)
        for wrong in (apgd_wrong, autoattack_wrong, random_wrong):
            assert not (wrong & ~exact).any(), eps
        assert float(exact.float().mean() - autoattack_wrong.float().mean()) <= 0.005, eps


def test_exact_refuses_a_model_that_is_not_affine(maxouts):
    model, x, y = maxouts["naive"]
    with pytest.raises(ConfigError, match="affine"):
        worst_case(model, x[:2], y[:2], 0.1)
