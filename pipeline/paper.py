"""The paper's MNIST numbers (Goodfellow, Shlens & Szegedy 2015; checked against its LaTeX source), keyed by the
setting they belong to, so a report can put them beside a matching row of ours.

Settings: model and regularizer choices, ε, and the metric's name in our summary table.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperNumber:
    model: str
    regularizer: str
    eps: float
    metric: str         # a column of summary.csv: error, confidence, confidence_wrong, clean_error, clean_confidence
    value: float
    claim: str


PAPER: tuple[PaperNumber, ...] = (
    PaperNumber("softmax", "none", 0.25, "error", 0.999, "shallow softmax: FGSM error"),
    PaperNumber("softmax", "none", 0.25, "confidence", 0.793, "shallow softmax: mean confidence under FGSM"),
    PaperNumber("maxout", "none", 0.25, "error", 0.894, "maxout: FGSM error"),
    PaperNumber("maxout", "none", 0.25, "confidence", 0.976, "maxout: mean confidence under FGSM"),
    PaperNumber("maxout", "none", 0.25, "clean_error", 0.0094, "maxout: clean test error"),
    PaperNumber("maxout", "adversarial", 0.25, "clean_error", 0.0084, "adversarially trained maxout: clean error"),
    PaperNumber("maxout", "adversarial", 0.25, "error", 0.179, "adversarially trained maxout: FGSM error"),
    PaperNumber("maxout", "adversarial", 0.25, "confidence_wrong", 0.814,
                "adversarially trained maxout: confidence on mistakes"),
    PaperNumber("maxout", "sign_noise", 0.25, "error", 0.862, "maxout trained on ±ε sign noise: FGSM error"),
    PaperNumber("maxout", "sign_noise", 0.25, "confidence", 0.973, "maxout trained on ±ε sign noise: confidence"),
    PaperNumber("maxout", "uniform_noise", 0.25, "error", 0.904, "maxout trained on U(−ε, ε) noise: FGSM error"),
    PaperNumber("maxout", "uniform_noise", 0.25, "confidence", 0.978, "maxout trained on U(−ε, ε) noise: confidence"),
    PaperNumber("rbf", "none", 0.25, "error", 0.554, "shallow RBF: FGSM error"),
    PaperNumber("rbf", "none", 0.25, "confidence_wrong", 0.012, "shallow RBF: confidence on mistakes"),
    PaperNumber("rbf", "none", 0.25, "clean_confidence", 0.606, "shallow RBF: mean clean confidence"),
    PaperNumber("logistic", "none", 0.25, "error", 0.99, "logistic regression 3 vs 7: FGSM error"),
    PaperNumber("logistic", "none", 0.25, "clean_error", 0.016, "logistic regression 3 vs 7: clean error"),
)


def paper_numbers(model: str, regularizer: str) -> list[PaperNumber]:
    return [p for p in PAPER if p.model == model and p.regularizer == regularizer]
