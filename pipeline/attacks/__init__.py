"""L∞ attacks: FGSM (one gradient for a whole ε curve) and PGD, behind one protocol (`Attack`: `perturb` a batch at
one ε; `curve` at every ε). A new attack is one module here with a subclass of `Attack` and a YAML in conf/attack/.
"""
from pipeline.attacks.base import (Attack, Clip, Curve, as_clip, attack_mode, check_eps, input_gradient, predict,
                                   scores, step)
from pipeline.attacks.fgsm import FGSM, fgsm, fgsm_curve
from pipeline.attacks.pgd import PGD, pgd

__all__ = ["Attack", "Clip", "Curve", "FGSM", "PGD", "as_clip", "attack_mode", "check_eps", "fgsm", "fgsm_curve",
           "input_gradient", "pgd", "predict", "scores", "step"]
