"""The numbers of a sweep that the paper's claims read, each a `Quantity` of pipeline.paper.verdicts: a job's own
evaluation (summary.csv: `Attacked`), a pair of jobs' transfer (transfer.csv: `Transferred`), an extra evaluation
(evaluations.csv: `Evaluated`). Each says why it has no values when the sweep lacks them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import pandas as pd

from pipeline.clipping import clip_name
from pipeline.paper.results import Results, Setting, lookup
from pipeline.paper.verdicts import Quantity

OWN_CLIP = "own"            # Evaluated: the clipping of the job's own attack (as its summary.csv curve)


def no_job(setting: Setting, results: Results, data: str) -> str:
    """Why a setting has no values: "" when the sweep has jobs of it on `data`."""
    return "" if results.job_ids(setting, data) else f"the sweep has no {setting.name} job"


def select(frame: pd.DataFrame, steps: Sequence[tuple[str, Any]]) -> tuple[pd.DataFrame, str]:
    """frame filtered by each (reason, row mask function) in turn; the reason of the step that left no row."""
    for reason, keep in steps:
        if not frame.empty:
            frame = frame[keep(frame)]
        if frame.empty:
            return frame, reason
    return frame, ""


def one_per_job(rows: pd.DataFrame, metric: str, label: str) -> pd.Series:
    """metric by job_id; several rows of one job would make the number depend on row order."""
    if rows["job_id"].duplicated().any():
        raise ValueError(f"{label}: several rows per job after selecting ε and clipping")
    return pd.Series(rows[metric].to_numpy(), index=rows["job_id"].to_numpy(), dtype=float)


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

    @property
    def settings(self) -> tuple[Setting, ...]:
        return (self.setting,)

    def needs(self) -> tuple[str, float] | None:
        return ("eval.epsilons", self.eps) if self.metric in PER_EPS else None

    def rows(self, results: Results, data: str) -> tuple[pd.DataFrame, str]:
        if reason := no_job(self.setting, results, data):
            return pd.DataFrame(), reason
        ids = results.job_ids(self.setting, data)
        at_eps = ((f"ε={self.eps:g} not in eval.epsilons", lambda r: matches_eps(r, self.eps)),)
        return select(results.summary, (("no job of it is complete", lambda r: r["job_id"].isin(ids)),
                                        *(at_eps if self.metric in PER_EPS else ())))

    def values(self, results: Results, data: str) -> pd.Series:
        rows, _ = self.rows(results, data)
        if rows.empty:
            return pd.Series(dtype=float)
        if self.metric not in PER_EPS:   # per job, the same on every ε row
            rows = rows.drop_duplicates("job_id")
        return one_per_job(rows, self.metric, self.label)


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

    @property
    def settings(self) -> tuple[Setting, ...]:
        return self.source, self.target

    def needs(self) -> tuple[str, float] | None:
        return "transfer.epsilons", self.eps

    def rows(self, results: Results, data: str) -> tuple[pd.DataFrame, str]:
        if reason := no_job(self.source, results, data) or no_job(self.target, results, data):
            return pd.DataFrame(), reason
        seeds = dict(zip(results.jobs["job_id"], results.jobs["seed"]))
        sources, targets = results.job_ids(self.source, data), results.job_ids(self.target, data)

        def paired(rows: pd.DataFrame) -> pd.Series:
            same_seed = [seeds[s] == seeds[t] and s != t for s, t in zip(rows["source"], rows["target"])]
            return pd.Series(same_seed, index=rows.index, dtype=bool)

        return select(results.transfer, (
            ("the transfer stage has no pair of them", lambda r: r["source"].isin(sources) & r["target"].isin(targets)),
            (f"ε={self.eps:g} not in transfer.epsilons", lambda r: matches_eps(r, self.eps)),
            ("no pair of jobs of one seed", paired)))

    def values(self, results: Results, data: str) -> pd.Series:
        rows, _ = self.rows(results, data)
        if rows.empty:
            return pd.Series(dtype=float)
        return pd.Series(rows[self.metric].to_numpy(), index=rows["source"] + ">" + rows["target"], dtype=float)


@dataclass(frozen=True, eq=True)
class Evaluated(Quantity):
    """A number of evaluations.csv (pipeline/evaluation/rows.py): an extra attack or test of each job, at ε with a
    clipping: by default the clipping of the job's own attack, so that it sits beside the job's FGSM numbers."""

    setting: Setting
    evaluation: str             # fgsm, pgd, apgd, strongest, ..., rubbish, one_member
    metric: str = "error"
    what: str = ""              # how the report names it
    eps: float | None = 0.25    # None: an evaluation without ε (rubbish inputs)
    clip: str = OWN_CLIP        # or a clipping as evaluations.csv names it: "none", "0-1"

    @property
    def label(self) -> str:
        return f"{self.setting.name}: {self.what or self.evaluation + ' ' + self.metric}"

    @property
    def settings(self) -> tuple[Setting, ...]:
        return (self.setting,)

    def needs(self) -> tuple[str, float] | None:
        return None if self.eps is None else ("evaluation.epsilons", self.eps)

    def rows(self, results: Results, data: str) -> tuple[pd.DataFrame, str]:
        if reason := no_job(self.setting, results, data):
            return pd.DataFrame(), reason
        ids = results.job_ids(self.setting, data)
        own = {job: clip_name(lookup(config, "attack.clip")) for job, config in zip(results.jobs["job_id"],
                                                                                      results.jobs["config"])}
        clip_text = "the job's own clipping" if self.clip == OWN_CLIP else f"clip {self.clip}"
        return select(results.evaluations, (
            ("the evaluation stage has no row of it", lambda r: r["job_id"].isin(ids)),
            (f"evaluations.csv has no {self.evaluation}", lambda r: r["evaluation"] == self.evaluation),
            (f"ε={self.eps:g} not in evaluation.epsilons" if self.eps is not None else "no row without ε",
             lambda r: r["eps"].isna() if self.eps is None else matches_eps(r, self.eps)),
            (f"{clip_text} not in evaluation.clips",
             lambda r: r["clip"] == (r["job_id"].map(own) if self.clip == OWN_CLIP else self.clip))))

    def values(self, results: Results, data: str) -> pd.Series:
        rows, _ = self.rows(results, data)
        return pd.Series(dtype=float) if rows.empty else one_per_job(rows, self.metric, self.label)
