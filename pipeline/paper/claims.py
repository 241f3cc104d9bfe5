"""The paper's claims (Goodfellow, Shlens & Szegedy 2015; numbers checked against its LaTeX source), each with
the numbers it rests on and the checks computed from ours; how they are judged is pipeline.paper.verdicts.
"""
from __future__ import annotations

import math
from typing import Any, Iterator, Sequence

from pipeline.errors import ConfigError
from pipeline.paper.results import Setting
from pipeline.paper.quantities import Attacked, Evaluated, Transferred
from pipeline.paper.verdicts import Check, Claim, Number, Quantity

# The paper's settings (each option of conf/paper/ trains one of them).
MAXOUT_240 = (("model.units", 240), ("model.pieces", 5))
DROPOUT = (("model.input_dropout", 0.2), ("model.hidden_dropout", 0.5))
PAPER_ADVERSARY = (("regularizer.alpha", 0.5), ("regularizer.eps", 0.25))

SOFTMAX = Setting("softmax", "softmax")
MAXOUT = Setting("maxout", "maxout", where=MAXOUT_240 + DROPOUT)
MAXOUT_NO_DROPOUT = Setting("maxout without dropout", "maxout",
                            where=MAXOUT_240 + (("model.input_dropout", 0.0), ("model.hidden_dropout", 0.0)))
MAXOUT_ADVERSARIAL = Setting("adversarially trained maxout", "maxout", "adversarial",
                             where=MAXOUT_240 + DROPOUT + PAPER_ADVERSARY)
MAXOUT_SIGN_NOISE = Setting("maxout trained on ±ε noise", "maxout", "sign_noise",
                            where=MAXOUT_240 + DROPOUT + (("regularizer.eps", 0.25),))
MAXOUT_UNIFORM_NOISE = Setting("maxout trained on U(−ε, ε) noise", "maxout", "uniform_noise",
                               where=MAXOUT_240 + DROPOUT + (("regularizer.eps", 0.25),))
MAXOUT_WEIGHT_DECAY = Setting("maxout with weight decay", "maxout", "weight_decay", where=MAXOUT_240 + DROPOUT)
RBF = Setting("RBF", "rbf", where=(("model.normalized", False),))
LOGISTIC_3V7 = Setting("logistic regression (3 vs 7)", "logistic", digits=(3, 7))
ENSEMBLE = Setting("maxout ensemble", "ensemble", where=(("model.member._target_", "pipeline.models.Maxout"),))
MAXOUT_1600 = Setting("1600-unit maxout", "maxout", where=(("model.units", 1600),) + DROPOUT)
MAXOUT_1600_ADVERSARIAL = Setting("adversarially trained 1600-unit maxout", "maxout", "adversarial",
                                  where=(("model.units", 1600),) + DROPOUT + PAPER_ADVERSARY)
CONV = Setting("conv net", "conv")


def maxout_l1(coefficient: float) -> Setting:
    return Setting(f"maxout with L1 {coefficient:g}", "maxout", "l1",
                   where=MAXOUT_240 + DROPOUT + (("regularizer.coefficient", coefficient),
                                                  ("regularizer.layers", "first")))


def error(setting: Setting, eps: float = 0.25) -> Attacked:
    return Attacked(setting, "error", eps)


def helps_less_than_adversarial_training(regularized: Setting, baseline: Setting) -> Check:
    """The regularizer's FGSM error stays nearer the baseline's than adversarial training's."""
    return 0.5 * error(baseline) + 0.5 * error(MAXOUT_ADVERSARIAL) < error(regularized)


def strongest(setting: Setting) -> Number:
    """The strongest evaluation attack's error at ε=.25 (evaluations.csv: per example, fooled by any attack of
    `evaluation.attacks`), beside a claim that a model resists FGSM: a gap to its FGSM error is gradient masking."""
    return Number(Evaluated(setting, "strongest", what="error under the strongest attack (FGSM ∪ PGD ∪ APGD)"))


def rubbish_share(setting: Setting, metric: str = "error") -> Evaluated:
    """Appendix A's rubbish inputs: no ε, never clipped."""
    return Evaluated(setting, "rubbish", metric, RUBBISH if metric == "error" else "", eps=None, clip="none")


RUBBISH = "share of N(0, I) inputs given > 50%"
softmax_error, maxout_error, adversarial_error, rbf_error = (
    error(s) for s in (SOFTMAX, MAXOUT, MAXOUT_ADVERSARIAL, RBF))
rubbish = {s: rubbish_share(s) for s in (MAXOUT, SOFTMAX, RBF)}
L1_TOO_LARGE, L1_SMALL = maxout_l1(0.0025), maxout_l1(0.0001)

CLAIMS: tuple[Claim, ...] = (
    Claim("FGSM (ε=.25) fools the shallow softmax almost always, with confidence",
          (Number(softmax_error, 0.999, label="error"),
           Number(Attacked(SOFTMAX, "confidence"), 0.793, label="confidence")),
          (0.9 < softmax_error, 0.5 < Attacked(SOFTMAX, "confidence"))),
    Claim("FGSM (ε=.25) fools maxout most of the time, with high confidence",
          (Number(maxout_error, 0.894, label="error"),
           Number(Attacked(MAXOUT, "confidence"), 0.976, label="confidence")),
          (0.5 < maxout_error, 0.75 < Attacked(MAXOUT, "confidence"))),
    Claim("The shallow softmax is fooled more often than maxout",
          (Number(softmax_error, 0.999), Number(maxout_error, 0.894)), (maxout_error < softmax_error,)),
    Claim("Adversarial training lowers maxout's clean test error (240 units)",
          (Number(Attacked(MAXOUT, "clean_error"), 0.0094, 0.003), Number(Attacked(MAXOUT_ADVERSARIAL, "clean_error"),
                                                                          0.0084, 0.003)),
          (Attacked(MAXOUT_ADVERSARIAL, "clean_error") < Attacked(MAXOUT, "clean_error"),)),
    Claim("Adversarial training cuts maxout's FGSM error by more than half",
          (Number(maxout_error, 0.894), Number(adversarial_error, 0.179), strongest(MAXOUT_ADVERSARIAL)),
          (adversarial_error < 0.5 * maxout_error,), note="the paper's 17.9% is its 1600-unit model"),
    Claim("The adversarially trained maxout is still confident on its mistakes",
          (Number(Attacked(MAXOUT_ADVERSARIAL, "confidence_wrong"), 0.814),),
          (0.5 < Attacked(MAXOUT_ADVERSARIAL, "confidence_wrong"),)),
    Claim("The 1600-unit maxout: adversarial training lowers clean error; FGSM error 17.9%",
          (Number(Attacked(MAXOUT_1600, "clean_error"), 0.0114, 0.003),
           Number(Attacked(MAXOUT_1600_ADVERSARIAL, "clean_error"), 0.00782, 0.003),
           Number(error(MAXOUT_1600_ADVERSARIAL), 0.179), strongest(MAXOUT_1600_ADVERSARIAL)),
          (Attacked(MAXOUT_1600_ADVERSARIAL, "clean_error") < Attacked(MAXOUT_1600, "clean_error"),
           error(MAXOUT_1600_ADVERSARIAL) < 0.5 * error(MAXOUT_1600)),
          note="the paper stops early on adversarial validation error and averages 5 runs"),
    Claim("The adversarially trained model resists the naive model's examples better than the reverse",
          (Number(Transferred(MAXOUT, MAXOUT_ADVERSARIAL), 0.196),
           Number(Transferred(MAXOUT_ADVERSARIAL, MAXOUT), 0.409)),
          (Transferred(MAXOUT, MAXOUT_ADVERSARIAL) < Transferred(MAXOUT_ADVERSARIAL, MAXOUT),)),
    Claim("Training on ±ε sign noise does not resist FGSM like adversarial training",
          (Number(error(MAXOUT_SIGN_NOISE), 0.862), Number(Attacked(MAXOUT_SIGN_NOISE, "confidence"), 0.973)),
          (helps_less_than_adversarial_training(MAXOUT_SIGN_NOISE, MAXOUT),)),
    Claim("Training on U(−ε, ε) noise does not resist FGSM like adversarial training",
          (Number(error(MAXOUT_UNIFORM_NOISE), 0.904), Number(Attacked(MAXOUT_UNIFORM_NOISE, "confidence"), 0.978)),
          (helps_less_than_adversarial_training(MAXOUT_UNIFORM_NOISE, MAXOUT),)),
    Claim("Dropout does not resist FGSM like adversarial training",
          (Number(maxout_error), Number(error(MAXOUT_NO_DROPOUT)), Number(adversarial_error)),
          (helps_less_than_adversarial_training(MAXOUT, MAXOUT_NO_DROPOUT),)),
    Claim("Weight decay does not resist FGSM like adversarial training",
          (Number(error(MAXOUT_WEIGHT_DECAY)), Number(maxout_error), Number(adversarial_error)),
          (helps_less_than_adversarial_training(MAXOUT_WEIGHT_DECAY, MAXOUT),)),
    Claim("L1 on the first layer with coefficient .0025 is too large: training error above 5%",
          (Number(Attacked(L1_TOO_LARGE, "train_error"), label="training error"),),
          (0.05 < Attacked(L1_TOO_LARGE, "train_error"),), note="the paper: training error above 5%"),
    Claim("A smaller L1 coefficient (.0001) trains but does not resist FGSM like adversarial training",
          (Number(Attacked(L1_SMALL, "train_error")), Number(error(L1_SMALL))),
          (Attacked(L1_SMALL, "train_error") < 0.05, helps_less_than_adversarial_training(L1_SMALL, MAXOUT))),
    Claim("The shallow RBF network is fooled less often than maxout",
          (Number(rbf_error, 0.554), Number(maxout_error, 0.894)), (rbf_error < maxout_error,)),
    Claim("The RBF network has low confidence on its FGSM mistakes",
          (Number(Attacked(RBF, "confidence_wrong"), 0.012, 0.02), Number(Attacked(RBF, "clean_confidence"), 0.606)),
          (Attacked(RBF, "confidence_wrong") < 0.25 * Attacked(RBF, "clean_confidence"),)),
    Claim("Softmax agrees with maxout's wrong class more often than RBF (examples both misclassify)",
          (Number(Transferred(MAXOUT, SOFTMAX, "agreement_both_wrong"), 0.846),
           Number(Transferred(MAXOUT, RBF, "agreement_both_wrong"), 0.543)),
          (Transferred(MAXOUT, RBF, "agreement_both_wrong") < Transferred(MAXOUT, SOFTMAX, "agreement_both_wrong"),)),
    Claim("On maxout's mistakes, softmax predicts maxout's class more often than RBF",
          (Number(Transferred(MAXOUT, SOFTMAX, "agreement_source_wrong"), 0.546),
           Number(Transferred(MAXOUT, RBF, "agreement_source_wrong"), 0.160)),
          (Transferred(MAXOUT, RBF, "agreement_source_wrong")
           < Transferred(MAXOUT, SOFTMAX, "agreement_source_wrong"),)),
    Claim("Fig. 2: logistic regression on 3s vs 7s is accurate and FGSM fools it almost always",
          (Number(Attacked(LOGISTIC_3V7, "clean_error"), 0.016, 0.01), Number(error(LOGISTIC_3V7), 0.99)),
          (Attacked(LOGISTIC_3V7, "clean_error") < 0.05, 0.9 < error(LOGISTIC_3V7))),
    Claim("Rubbish N(0, I) inputs: maxout and softmax give most of them a class with > 50%; RBF gives (almost) none",
          (Number(rubbish[MAXOUT], 0.9835), Number(rubbish[SOFTMAX], 0.598), Number(rubbish[RBF], 0.0, 0.01)),
          (0.5 < rubbish[MAXOUT], 0.5 < rubbish[SOFTMAX], rubbish[RBF] < rubbish[SOFTMAX],
           rubbish[RBF] < rubbish[MAXOUT])),
    Claim("An ensemble of maxout nets is not resistant, whether the ensemble or one member is attacked",
          (Number(error(ENSEMBLE), 0.911, label="attack the ensemble"),
           Number(Evaluated(ENSEMBLE, "one_member", what="FGSM error (crafted on one member)"), 0.879,
                  label="attack one member")),
          (0.5 < error(ENSEMBLE), 0.5 < Evaluated(ENSEMBLE, "one_member", what="FGSM error (crafted on one member)"))),
    Claim("CIFAR-10 conv net at ε=.1: mostly fooled, confidently",
          (Number(error(CONV, 0.1), 0.8715, label="error"),
           Number(Attacked(CONV, "confidence_wrong", 0.1), 0.966, label="confidence on mistakes")),
          (0.5 < error(CONV, 0.1), 0.75 < Attacked(CONV, "confidence_wrong", 0.1)),
          data="cifar10", note="the paper's is a maxout conv net on preprocessed images"),
)

# What the claims above leave out of the paper, and why (the report prints it under the table).
LEFT_OUT: tuple[str, ...] = (
    "RBF vs softmax agreement on maxout's examples (paper: 53.6%): transfer.csv compares each target with the "
    "source only.",
    "The paper's CIFAR-10 model is a maxout conv net on preprocessed images; conf/paper/conv_cifar10 is a ReLU conv "
    "net on [0, 1] pixels, and needs the CIFAR-10 files (experiment=goodfellow2015).",
    "Ensembles have 12 members in the paper and experiment=goodfellow2015, 4 in goodfellow2015_cpu.",
)


# --- what a sweep must measure for the claims -------------------------------------------------------------------

def quantities(claims: Sequence[Claim] = CLAIMS) -> Iterator[Quantity]:
    """Every quantity the claims read: their numbers and the terms of their checks."""
    for claim in claims:
        yield from claim.quantities()


def check_claimed_epsilons(cfg: Any, jobs: Sequence[Any], claims: Sequence[Claim] = CLAIMS) -> None:
    """Refuse a paper experiment (a grid over `+paper` options) in which a job of a claim's setting lacks the ε the
    claim reads: its own eval.epsilons, or the sweep's evaluation.epsilons / transfer.epsilons when those stages
    run. Other sweeps are judged as they are: such a claim says NOT RUN with that reason."""
    if not any(job.of_the_paper for job in jobs):
        return
    needed = [(q, *q.needs()) for q in dict.fromkeys(quantities(claims)) if q.needs() is not None]
    jobs_of = {s: [job for job in jobs if s.matches(job.config)] for q, _, _ in needed for s in q.settings}
    for quantity, key, eps in needed:
        section = key.split(".")[0]
        if section != "eval" and not cfg[section].enabled:
            continue
        for setting in quantity.settings:
            for job in jobs_of[setting]:
                held = job.config["eval"]["epsilons"] if section == "eval" else cfg[section].epsilons
                if not any(math.isclose(eps, float(e), abs_tol=1e-9) for e in held):
                    raise ConfigError(f"{key}={list(held)} lacks ε={eps:g}, which the paper's claims read for "
                                      f"{setting.name} (sweep {cfg.sweep.name}); add it")
