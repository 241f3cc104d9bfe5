"""L∞ attacks: FGSM (one gradient for a whole ε curve), PGD, APGD-CE and a minimum-norm attack (FAB: every ε from
one run), behind one protocol (`Attack`: `perturb` a
batch at one ε; `curve` at every ε). A new attack is one module here with a subclass of `Attack` and a YAML in
conf/attack/.
"""
from pipeline.attacks.base import (Attack, Clip, Curve, Draws, as_clip, attack_mode, check_eps, clean_scores,
                                   costs_and_gradient, input_gradient, predict, project, scores, step)
from pipeline.attacks.fgsm import FGSM, fgsm, fgsm_curve
from pipeline.attacks.pgd import PGD, pgd
from pipeline.attacks.apgd import APGD, apgd
from pipeline.attacks.exact import Exact, is_affine, worst_case
from pipeline.attacks.autoattack import AutoAttack, autoattack
from pipeline.attacks.minimum_norm import MinimumNorm, smallest
from pipeline.attacks.transfer import transfer_rows

__all__ = ["APGD", "Attack", "AutoAttack", "autoattack", "Clip", "Curve", "Draws", "Exact", "FGSM", "PGD", "apgd",
           "as_clip", "attack_mode", "check_eps", "clean_scores", "costs_and_gradient", "fgsm", "fgsm_curve",
           "input_gradient", "is_affine", "MinimumNorm", "pgd", "predict", "project", "scores", "smallest", "step",
           "transfer_rows", "worst_case"]
