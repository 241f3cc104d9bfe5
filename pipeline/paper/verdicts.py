"""How a claim of a paper is judged against a sweep's measurements (the paper's own claims: pipeline.paper.claims).

A claim is about settings of the paper (`Setting`: which jobs, picked by their config, so that any sweep that
ran the setting counts). It lists the paper's numbers beside the quantity of ours that measures each (`Number`)
and qualitative checks (`Check`: one linear expression of our quantities below another, written as
`adversarial < 0.5 * naive`). Its verdict:

- on any data: the checks. A quantity is a mean over the jobs of its setting (one per seed) with a 95%
  t-interval; a check PASSes when the interval of (larger − smaller) lies above 0, FAILs when it lies below 0,
  and is UNCLEAR when it holds 0 (one seed: the means decide);
- on the paper's own data set (full MNIST; CIFAR-10 for the conv net) each of our means must also lie within
  its number's band of the paper's;
- any FAIL fails the claim, then UNCLEAR, then NOT RUN (the sweep has no job of a setting a check needs).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import pandas as pd

from pipeline.paper.results import Results, Setting
from pipeline.stats import Estimate, estimate, percent

PASS, FAIL, UNCLEAR, NOT_RUN = "PASS", "FAIL", "UNCLEAR", "NOT RUN"


# --- our quantities and the expressions checks compare ----------------------------------------------------------

class Quantity:
    """A number measured once per job (or pair of jobs) of a setting; arithmetic on it builds an `Expr`."""

    label: str

    def values(self, results: Results, data: str) -> pd.Series:
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


PER_EPS = ("error", "confidence", "confidence_wrong")
METRICS = {"error": "FGSM error", "confidence": "confidence under FGSM", "confidence_wrong": "confidence on mistakes",
           "clean_error": "clean error", "clean_confidence": "clean confidence", "train_error": "training error"}


def matches_eps(frame: pd.DataFrame, eps: float) -> pd.Series:
    return (frame["eps"] - eps).abs() < 1e-9


@dataclass(frozen=True, eq=True)
class Attacked(Quantity):
    """A number of each job's own evaluation (summary.csv): at ε for the FGSM metrics, else clean or training."""

    setting: Setting
    metric: str = "error"
    eps: float = 0.25

    @property
    def label(self) -> str:
        at = f" (ε={self.eps:g})" if self.metric in PER_EPS and self.eps != 0.25 else ""
        return f"{self.setting.name}: {METRICS[self.metric]}{at}"

    def values(self, results: Results, data: str) -> pd.Series:
        summary = results.summary
        if summary.empty:
            return pd.Series(dtype=float)
        rows = summary[summary["job_id"].isin(results.job_ids(self.setting, data))]
        if self.metric in PER_EPS:
            rows = rows[matches_eps(rows, self.eps)]
        return rows.groupby("job_id")[self.metric].first()


@dataclass(frozen=True, eq=True)
class Transferred(Quantity):
    """A transfer-table number for FGSM examples crafted on `source` and shown to `target` (same seed, same data)."""

    source: Setting
    target: Setting
    metric: str = "error"       # error, agreement_both_wrong, agreement_source_wrong
    eps: float = 0.25

    @property
    def label(self) -> str:
        what = {"error": "error", "agreement_both_wrong": "agreement on the wrong class (both wrong)",
                "agreement_source_wrong": "agreement with the source's mistakes"}[self.metric]
        return f"{self.target.name}: {what} on {self.source.name}'s examples"

    def values(self, results: Results, data: str) -> pd.Series:
        transfer = results.transfer
        if transfer.empty:
            return pd.Series(dtype=float)
        seeds = dict(zip(results.jobs["job_id"], results.jobs["seed"]))
        sources, targets = results.job_ids(self.source, data), results.job_ids(self.target, data)
        rows = transfer[transfer["source"].isin(sources) & transfer["target"].isin(targets)
                        & matches_eps(transfer, self.eps)]
        paired = [seeds[s] == seeds[t] and s != t for s, t in zip(rows["source"], rows["target"])]
        rows = rows[pd.Series(paired, index=rows.index, dtype=bool)]
        return pd.Series(rows[self.metric].to_numpy(), index=rows["source"] + ">" + rows["target"], dtype=float)


@dataclass(frozen=True, eq=True)
class Evaluated(Quantity):
    """A number of evaluations.csv (pipeline.evaluations): an extra attack or test of each job."""

    setting: Setting
    evaluation: str             # fgsm, pgd, ..., rubbish, one_member
    metric: str = "error"
    what: str = ""              # how the report names it

    @property
    def label(self) -> str:
        return f"{self.setting.name}: {self.what or self.evaluation + ' ' + self.metric}"

    def values(self, results: Results, data: str) -> pd.Series:
        evaluations = results.evaluations
        if evaluations.empty:
            return pd.Series(dtype=float)
        rows = evaluations[evaluations["job_id"].isin(results.job_ids(self.setting, data))
                           & (evaluations["evaluation"] == self.evaluation)]
        return rows.groupby("job_id")[self.metric].first()


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
        parts = [(q.estimate(results, data), c) for q, c in self.terms if c != 0]
        if any(part is None for part, _ in parts):
            return None
        mean = self.constant + sum(c * part.mean for part, c in parts)
        halves = [c * part.half for part, c in parts if not math.isnan(part.half)]
        single = len(halves) < len(parts)
        half = float("nan") if single and not halves else math.sqrt(sum(h * h for h in halves))
        return Estimate(mean, half, min((part.n for part, _ in parts), default=0))

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
        difference = (self.larger - self.smaller).estimate(results, data)
        if difference is None:
            return NOT_RUN
        return PASS if difference.low > 0 else FAIL if difference.high < 0 else UNCLEAR


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


def combine(verdicts: Sequence[str]) -> str:
    """One verdict for several checks: any FAIL fails; then UNCLEAR; then NOT RUN; else PASS."""
    for verdict in (FAIL, UNCLEAR, NOT_RUN):
        if verdict in verdicts:
            return verdict
    return PASS


def band_verdict(claim: Claim, estimates: Sequence[Estimate | None]) -> tuple[str, str]:
    compared = [(n, e) for n, e in zip(claim.numbers, estimates) if n.paper is not None and e is not None]
    if not compared:
        return NOT_RUN, ""
    test = "; ".join(f"|ours − paper| ≤ {100 * n.band:g} pts" for n, _ in compared)
    return (PASS if all(abs(e.mean - n.paper) <= n.band for n, e in compared) else FAIL), test


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
            "seeds": str(min(seeds)), "data": data, "test": "; ".join(tests), "verdict": combine(verdicts)}


def digits(number: Number) -> int:
    return 2 if number.paper is not None and number.paper < 0.02 else 1


def paper_text(claim: Claim) -> str:
    text = "; ".join(f"{n.name}: {percent(n.paper, digits(n))}" for n in claim.numbers if n.paper is not None)
    return (text or "–") + (f" ({claim.note})" if claim.note else "")


def claims_table(results: Results, claims: Sequence[Claim]) -> pd.DataFrame:
    """One row per claim and data set it was measured on; one NOT RUN row for a claim measured nowhere."""
    rows = []
    for claim in claims:
        measured = [row for data in results.datasets if (row := assess(claim, results, data)) is not None]
        rows += measured or [{"claim": claim.text, "paper": paper_text(claim), "ours (mean ± 95% interval)": "not run",
                              "seeds": "0", "data": "–", "test": "", "verdict": NOT_RUN}]
    return pd.DataFrame(rows)
