"""Every model and regularizer option composes and trains; the models' own claims (RBF, max-norm, ensemble)."""
from __future__ import annotations

import decimal
import math

import pytest
import torch

from tests.support.training import train_briefly
from pipeline.config import group_options as options
from pipeline.errors import ConfigError
from pipeline.models import RBF, Ensemble, Logistic, Maxout, Softmax
from pipeline.models.networks import log1mexp

# What each option needs besides its own YAML to train on mnist5k in a test. Every YAML must be listed here: the
# test below fails for a new option until someone decides how it is tested.
MODEL_OVERRIDES = {
    "conv": ["model.channels=[8,16]", "model.hidden=32"],
    "ensemble": ["model.size=3"],
    "logistic": ["data.digits=[3,7]"],
    "maxout": [],
    "mlp": ["model.hidden=[64,64]"],
    "rbf": ["optimizer=adam"],
    "softmax": [],
}
EVALUATED_ONLY = ["pretrained"]   # never trained: tests/test_user_models.py evaluates it
REGULARIZER_OVERRIDES = {
    "adversarial": [], "l1": [], "none": [], "sign_noise": [], "uniform_noise": [], "weight_decay": [],
}
CASES = sorted({(m, "none") for m in MODEL_OVERRIDES} |
               {(m, r) for m in ("softmax", "maxout") for r in options("regularizer")})


def test_every_model_and_regularizer_option_has_a_test():
    assert sorted([*MODEL_OVERRIDES, *EVALUATED_ONLY]) == options("model"), \
        "add the new conf/model option to MODEL_OVERRIDES"
    assert sorted(REGULARIZER_OVERRIDES) == options("regularizer"), \
        "add the new conf/regularizer option to REGULARIZER_OVERRIDES"


@pytest.mark.slow
@pytest.mark.parametrize("model, regularizer", CASES)
def test_option_composes_and_trains(tmp_path, model, regularizer):
    result = train_briefly(tmp_path, f"model={model}", f"regularizer={regularizer}",
                           *MODEL_OVERRIDES.get(model, []), *REGULARIZER_OVERRIDES.get(regularizer, []))
    assert result["steps"] == 2                                      # data.limit=200, batches of 100
    assert math.isfinite(result["loss"]) and result["loss"] > 0
    trained = dict(result["model"].named_parameters())
    unchanged = [name for name, before in result["before"].items() if torch.equal(before, trained[name])]
    assert not unchanged, f"parameters not updated: {unchanged}"


def test_rbf_probabilities_are_per_class_and_not_normalized(softmax_model):
    _, x, _ = softmax_model
    torch.manual_seed(0)
    model = RBF(x.shape[1:], 10, init_beta=0.01)
    model.initialize(x, torch.arange(len(x)) % 10)
    with torch.no_grad():
        p = model.probabilities(model(x))
    assert p.shape == (len(x), 10)
    assert (p >= 0).all() and (p <= 1).all()
    sums = p.sum(dim=1)
    assert (sums - 1).abs().max() > 0.1                              # not a softmax
    normalized = RBF(x.shape[1:], 10, normalized=True)
    with torch.no_grad():
        torch.testing.assert_close(normalized.probabilities(normalized(x)).sum(dim=1), torch.ones(len(x)))


def test_rbf_far_from_the_data_is_unconfident(softmax_model):
    _, x, y = softmax_model
    model = RBF(x.shape[1:], 10, init_beta=0.05)
    model.initialize(x, y)
    with torch.no_grad():
        near = model.probabilities(model(x)).max(dim=1).values.mean()
        far = model.probabilities(model(torch.randn(100, *x.shape[1:]))).max(dim=1).values.mean()
    assert far < 1e-3 < near


def reference_log1mexp(a: float) -> float:
    """log(1 − exp(a)) with 50 significant digits (float64 alone loses digits at both ends)."""
    with decimal.localcontext() as context:
        context.prec = 50
        return float((1 - decimal.Decimal(a).exp()).ln())


def test_log1mexp_is_accurate():
    a = -torch.logspace(-6, 1.5, 300).float()                           # from -1e-6 to about -31.6
    reference = torch.tensor([reference_log1mexp(v) for v in a.double().tolist()], dtype=torch.float64)
    relative = ((log1mexp(a).double() - reference) / reference).abs()
    assert relative.max() < 1e-5, f"worst relative error {relative.max():.2e} at a={a[relative.argmax()]:.3g}"
    naive = torch.log(1 - torch.exp(a)).double()                      # what log1mexp is for
    assert ((naive - reference) / reference).abs().max() > 1e-2
    assert torch.isfinite(log1mexp(torch.tensor([0.0, -1e-12, -100.0]))).all()


def test_maxout_max_norm_bounds_every_weight_row():
    torch.manual_seed(0)
    model = Maxout((1, 28, 28), 10, units=20, pieces=3, max_norm=1.9365)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for linear in linears:
            linear.weight.mul_(50)
            linear.weight[0].mul_(1e-4)                              # one row inside the ball: left alone
    small = [linear.weight[0].clone() for linear in linears]
    assert max(linear.weight.norm(dim=1).max() for linear in linears) > 1.9365
    model.constrain()
    for linear, row in zip(linears, small):
        norms = linear.weight.norm(dim=1)
        assert (norms <= 1.9365 * (1 + 1e-6)).all()
        assert norms[1:].min() > 1.9365 * (1 - 1e-6)                  # the long rows were rescaled, not zeroed
        torch.testing.assert_close(linear.weight[0], row)


def test_maxout_without_max_norm_is_unconstrained():
    model = Maxout((1, 28, 28), 10, units=4, pieces=2, max_norm=None)
    with torch.no_grad():
        model.first_layer.weight.mul_(100)
    before = model.first_layer.weight.clone()
    model.constrain()
    assert torch.equal(model.first_layer.weight, before)


def test_ensemble_predicts_the_log_of_the_mean_member_probability(softmax_model):
    _, x, _ = softmax_model
    torch.manual_seed(0)
    member = {"_target_": "pipeline.models.Maxout", "units": 8, "pieces": 2, "layers": 1}
    ensemble = Ensemble(x.shape[1:], 10, member=member, size=3).eval()
    assert len(ensemble.members) == 3
    with torch.no_grad():
        expected = torch.stack([m(x).softmax(dim=1) for m in ensemble.members]).mean(dim=0).log()
        torch.testing.assert_close(ensemble(x), expected)
        assert not torch.allclose(ensemble.members[0](x), ensemble.members[1](x))     # independent members
    rbf = Ensemble(x.shape[1:], 10, member=None, size=2, build=lambda: RBF(x.shape[1:], 10, init_beta=1e-3))
    with torch.no_grad():                                            # members' own (unnormalized) probabilities
        expected = torch.stack([m(x).exp() for m in rbf.members]).mean(dim=0).log()
        torch.testing.assert_close(rbf(x), expected)


def test_logistic_is_binary():
    with pytest.raises(ConfigError, match="10 classes"):
        Logistic((1, 28, 28), 10)
    model = Logistic((1, 28, 28), 2)
    logits = model(torch.rand(4, 1, 28, 28))
    assert logits.shape == (4, 2) and torch.equal(logits[:, 0], torch.zeros(4))


@pytest.mark.parametrize("build, value", [(lambda: Softmax((4,), 1), "num_classes=1"),
                                          (lambda: Maxout((4,), 2, input_dropout=1.0), "input_dropout=1.0"),
                                          (lambda: Maxout((4,), 2, units=0), "units=0"),
                                          (lambda: Ensemble((4,), 2, member=None, size=0), "size=0")])
def test_bad_model_settings_are_refused(build, value):
    with pytest.raises(ConfigError, match=value):
        build()
