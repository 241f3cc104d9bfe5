"""Means over seeds with a 95% interval, and how the report writes them.

Sweeps run few seeds (3 to 5), so the interval uses Student's t rather than the normal 1.96: with 3 seeds the
normal interval would be about half as wide as it should be.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Estimate:
    """A mean over n values and the half-width of its 95% interval (NaN with a single value)."""

    mean: float
    half: float
    n: int

    @property
    def low(self) -> float:
        return self.mean - (0.0 if math.isnan(self.half) else self.half)

    @property
    def high(self) -> float:
        return self.mean + (0.0 if math.isnan(self.half) else self.half)

    def percent(self, digits: int = 1) -> str:
        if math.isnan(self.half):
            return f"{percent(self.mean, digits)} (1 seed)" if self.n == 1 else percent(self.mean, digits)
        return f"{100 * self.mean:.{digits}f} ± {100 * self.half:.{digits}f}%"


def t_quantile(n: int) -> float:
    """The 97.5% quantile of Student's t with n − 1 degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.975, n - 1))


def estimate(values: Iterable[float]) -> Estimate | None:
    """Mean and 95% t-interval of the finite values; None when there are none."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return None
    n = len(finite)
    mean = sum(finite) / n
    if n == 1:
        return Estimate(mean, float("nan"), 1)
    std = math.sqrt(sum((v - mean) ** 2 for v in finite) / (n - 1))
    return Estimate(mean, t_quantile(n) * std / math.sqrt(n), n)


def percent(value: float | None, digits: int = 1) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.{digits}f}%"
