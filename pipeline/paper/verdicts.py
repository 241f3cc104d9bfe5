"""How a claim of a paper is judged against a sweep's measurements (the paper's own claims: pipeline.paper.claims).

A claim is about settings of the paper (`Setting`: which jobs, picked by their config, so that any sweep that
ran the setting counts). It lists the paper's numbers beside the quantity of ours that measures each (`Number`)
and qualitative checks (`Check`: one linear expression of our quantities below another, written as
`adversarial < 0.5 * naive`). Its verdict:

- on any data: the checks. A quantity is a mean over the jobs of its setting (one per seed) with a 95%
  t-interval; a check PASSes when the interval of (larger − smaller) lies above 0, FAILs when it lies below 0,
  and is UNCLEAR when it holds 0. When a term has no interval (one seed), neither has the difference: the means
  decide, and the verdict says so ("PASS (1 seed)", "FAIL (1 seed)");
- on the paper's own data set (full MNIST; CIFAR-10 for the conv net) each of our means must also lie within
  its number's band of the paper's ("(1 seed)" again when a mean is one seed's);
- any FAIL fails the claim, then UNCLEAR, then NOT RUN with its reason (the sweep has no job of a setting a check
  needs, or did not measure the ε or clipping it reads: "NOT RUN (ε=0.25 not in eval.epsilons)").
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import pandas as pd

from pipeline.paper.results import Results, Setting
from pipeline.stats import Estimate, estimate, percent

PASS, FAIL, UNCLEAR, NOT_RUN = "PASS", "FAIL", "UNCLEAR", "NOT RUN"
VERDICTS = (PASS, FAIL, UNCLEAR, NOT_RUN)
ONE_SEED = " (1 seed)"      # a PASS or FAIL decided by means without an interval


def verdict_word(verdict: str) -> str:
    """PASS, FAIL, UNCLEAR or NOT RUN, without the qualifier ("PASS (1 seed)" -> "PASS")."""
    return verdict.split(" (", 1)[0]


# --- our quantities and the expressions checks compare ----------------------------------------------------------

class Quantity:
    """A number measured once per job (or pair of jobs) of a setting; arithmetic on it builds an `Expr`."""

    label: str

    def rows(self, results: Results, data: str) -> tuple[pd.DataFrame, str]:
        """This quantity's rows of its stage's table, and why there are none when there are none."""
        raise NotImplementedError

    def values(self, results: Results, data: str) -> pd.Series:
        raise NotImplementedError

    def missing(self, results: Results, data: str) -> str:
        return self.rows(results, data)[1]

    def needs(self) -> tuple[str, float] | None:
        """The sweep key whose list of ε must hold an ε for this quantity to be measured, and that ε."""
        return None

    @property
    def settings(self) -> tuple[Setting, ...]:
        raise NotImplementedError

    def estimate(self, results: Results, data: str) -> Estimate | None:
        return estimate(self.values(results, data))

    def expr(self) -> "Expr":
        return Expr(((self, 1.0),))

    def __add__(self, other: Any) -> "Expr":
        return self.expr() + other

    __radd__ = __add__

    def __sub__(self, other: Any) -> "Expr":
        return self.expr() - other

    def __mul__(self, factor: float) -> "Expr":
        return self.expr() * factor

    __rmul__ = __mul__

    def __lt__(self, other: Any) -> "Check":
        return self.expr() < other

    def __gt__(self, other: Any) -> "Check":
        return self.expr() > other


@dataclass(frozen=True)
class Expr:
    """Σ coefficient·quantity + constant. Terms are independent: their intervals add in quadrature."""

    terms: tuple[tuple[Quantity, float], ...] = ()
    constant: float = 0.0

    def __add__(self, other: Any) -> "Expr":
        other = as_expr(other)
        coefficients = dict(self.terms)
        for quantity, coefficient in other.terms:
            coefficients[quantity] = coefficients.get(quantity, 0.0) + coefficient
        return Expr(tuple(coefficients.items()), self.constant + other.constant)

    __radd__ = __add__

    def __mul__(self, factor: float) -> "Expr":
        return Expr(tuple((q, c * factor) for q, c in self.terms), self.constant * factor)

    __rmul__ = __mul__

    def __sub__(self, other: Any) -> "Expr":
        return self + as_expr(other) * -1.0

    def __lt__(self, other: Any) -> "Check":
        return Check(self, as_expr(other))

    def __gt__(self, other: Any) -> "Check":
        return Check(as_expr(other), self)

    def estimate(self, results: Results, data: str) -> Estimate | None:
        """Mean and 95% half-width; the half-width is NaN when any term has none (one seed is not exact)."""
        parts = [(q.estimate(results, data), c) for q, c in self.terms if c != 0]
        if any(part is None for part, _ in parts):
            return None
        mean = self.constant + sum(c * part.mean for part, c in parts)
        half = math.sqrt(sum((c * part.half) ** 2 for part, c in parts))   # NaN propagates
        return Estimate(mean, half, min((part.n for part, _ in parts), default=0))

    def missing(self, results: Results, data: str) -> str:
        """Why the expression has no estimate: the reason of its first term without values."""
        return next((reason for q, c in self.terms if c != 0 and (reason := q.missing(results, data))), "")

    def text(self) -> str:
        words = [q.label if c == 1 else f"{c:g} × [{q.label}]" for q, c in self.terms if c != 0]
        if self.constant or not words:
            words.append(percent(self.constant, 0))
        return " + ".join(words).replace("+ -", "− ")


def as_expr(value: Any) -> Expr:
    if isinstance(value, Expr):
        return value
    if isinstance(value, Quantity):
        return value.expr()
    return Expr((), float(value))


@dataclass(frozen=True)
class Check:
    """smaller < larger, judged on the 95% interval of larger − smaller."""

    smaller: Expr
    larger: Expr

    def text(self) -> str:
        return f"{self.smaller.text()} < {self.larger.text()}"

    def verdict(self, results: Results, data: str) -> str:
        expression = self.larger - self.smaller
        difference = expression.estimate(results, data)
        if difference is None:
            return not_run(expression.missing(results, data))
        if math.isnan(difference.half):   # a term of one seed: the means decide, and the verdict says so
            return (PASS + ONE_SEED if difference.mean > 0 else FAIL + ONE_SEED if difference.mean < 0
                    else UNCLEAR)
        return PASS if difference.low > 0 else FAIL if difference.high < 0 else UNCLEAR


def not_run(reason: str) -> str:
    return f"{NOT_RUN} ({reason})" if reason else NOT_RUN


# --- the claims -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Number:
    """One number of the paper (None where it gives none) and the quantity of ours that measures it."""

    ours: Quantity
    paper: float | None = None
    band: float = 0.05          # on the paper's data, ours matches when |ours − paper| ≤ band
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or self.ours.label


@dataclass(frozen=True)
class Claim:
    text: str
    numbers: tuple[Number, ...]
    checks: tuple[Check, ...]
    data: str = "mnist"         # the paper's data set for these numbers
    note: str = ""

    def quantities(self) -> list[Quantity]:
        """Every quantity the claim reads: its numbers and the terms of its checks."""
        return [n.ours for n in self.numbers] + [q for check in self.checks
                                                 for expr in (check.smaller, check.larger) for q, _ in expr.terms]


def combine(verdicts: Sequence[str]) -> str:
    """One verdict for several checks: any FAIL fails (one with an interval before a one-seed FAIL); then UNCLEAR;
    then NOT RUN (with the first reason); else PASS, "PASS (1 seed)" when any check passed on one seed."""
    by_word = {word: [v for v in verdicts if verdict_word(v) == word] for word in VERDICTS}
    if by_word[FAIL]:
        return FAIL if FAIL in by_word[FAIL] else by_word[FAIL][0]
    if by_word[UNCLEAR]:
        return UNCLEAR
    if by_word[NOT_RUN]:
        return by_word[NOT_RUN][0]
    return PASS if all(v == PASS for v in verdicts) else PASS + ONE_SEED


def band_verdict(claim: Claim, estimates: Sequence[Estimate | None]) -> tuple[str, str]:
    compared = [(n, e) for n, e in zip(claim.numbers, estimates) if n.paper is not None and e is not None]
    if not compared:
        return NOT_RUN, ""
    test = "; ".join(f"|ours − paper| ≤ {100 * n.band:g} pts" for n, _ in compared)
    verdict = PASS if all(abs(e.mean - n.paper) <= n.band for n, e in compared) else FAIL
    return verdict + (ONE_SEED if any(math.isnan(e.half) for _, e in compared) else ""), test


def assess(claim: Claim, results: Results, data: str) -> dict[str, str] | None:
    """The claim's row on one data set, or None when no number of the claim was measured there."""
    estimates = [n.ours.estimate(results, data) for n in claim.numbers]
    if all(e is None for e in estimates):
        return None
    verdicts = [check.verdict(results, data) for check in claim.checks]
    tests = [check.text() for check in claim.checks]
    if data == claim.data:   # the paper's own data: the numbers must match too
        band, test = band_verdict(claim, estimates)
        if band != NOT_RUN:
            verdicts, tests = [band, *verdicts], [test, *tests]
    seeds = [e.n for e in estimates if e is not None]
    return {"claim": claim.text, "paper": paper_text(claim),
            "ours (mean ± 95% interval)": "; ".join(f"{n.name}: {e.percent(digits(n)) if e else 'not run'}"
                                                    for n, e in zip(claim.numbers, estimates)),
            "seeds": str(min(seeds)), "data": data, "test": "; ".join(tests), "verdict": combine(verdicts),
            "trust ⚑": flagged_checks(claim, results, data)}


def flagged_checks(claim: Claim, results: Results, data: str) -> str:
    """The attack-failure diagnostics (diagnostics.csv) flagged on some job of a setting the claim reads, as
    'check (setting)'. Shown beside the verdict; the verdict stays the claim's own check."""
    if results.diagnostics.empty:
        return ""
    flagged = results.diagnostics[results.diagnostics["flag"].astype(bool)]
    settings = dict.fromkeys(s for q in claim.quantities() for s in q.settings)
    found = [f"{check} ({setting.name})" for setting in settings
             for check in sorted(set(flagged[flagged["job_id"].isin(results.job_ids(setting, data))]["check"]))]
    return "⚑ " + ", ".join(found) if found else ""


def digits(number: Number) -> int:
    return 2 if number.paper is not None and number.paper < 0.02 else 1


def paper_text(claim: Claim) -> str:
    text = "; ".join(f"{n.name}: {percent(n.paper, digits(n))}" for n in claim.numbers if n.paper is not None)
    return (text or "–") + (f" ({claim.note})" if claim.note else "")


def claims_table(results: Results, claims: Sequence[Claim]) -> pd.DataFrame:
    """One row per claim and data set it was measured on; one NOT RUN row, with its reason, for a claim measured
    nowhere."""
    rows = []
    for claim in claims:
        measured = [row for data in results.datasets if (row := assess(claim, results, data)) is not None]
        rows += measured or [{"claim": claim.text, "paper": paper_text(claim), "ours (mean ± 95% interval)": "not run",
                              "seeds": "0", "data": "–", "test": "", "verdict": not_run(why_not_run(claim, results)),
                              "trust ⚑": ""}]
    return pd.DataFrame(rows)


def why_not_run(claim: Claim, results: Results) -> str:
    """The first reason a number of the claim has no values, preferring a missing ε or clipping over a missing
    setting (the more specific: the sweep ran the setting but not at the claim's ε)."""
    reasons = [n.ours.missing(results, data) for data in results.datasets or [claim.data] for n in claim.numbers]
    specific = [r for r in reasons if r and not r.startswith("the sweep has no")]
    return next(iter(specific or [r for r in reasons if r]), "")
