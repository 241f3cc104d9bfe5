"""What a sweep measured, as the paper's claims and figures read it: the complete jobs (id, seed, data, config)
with the stages' tables, and the settings of the paper (`Setting`: which jobs, picked by their config, so that
any sweep that ran a setting counts).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import pandas as pd


@dataclass
class Results:
    """A sweep's measurements: one row per complete job (job_id, seed, data, config) and the stages' tables."""

    jobs: pd.DataFrame
    summary: pd.DataFrame
    transfer: pd.DataFrame = field(default_factory=pd.DataFrame)
    evaluations: pd.DataFrame = field(default_factory=pd.DataFrame)
    transfer_settings: pd.DataFrame = field(default_factory=pd.DataFrame)   # transfer per setting, over seeds
    diagnostics: pd.DataFrame = field(default_factory=pd.DataFrame)   # diagnostics.csv: job_id, check, ..., flag

    @classmethod
    def of(cls, configs: Mapping[str, Mapping[str, Any]], summary: pd.DataFrame,
           transfer: pd.DataFrame | None = None, evaluations: pd.DataFrame | None = None,
           transfer_settings: pd.DataFrame | None = None, diagnostics: pd.DataFrame | None = None) -> "Results":
        """From the resolved configs of the complete jobs (job id -> config) and the stages' tables."""
        rows = [{"job_id": job, "seed": config.get("seed"), "data": config["data"]["name"], "config": config}
                for job, config in configs.items()]
        jobs = pd.DataFrame(rows, columns=["job_id", "seed", "data", "config"])
        tables = [t if t is not None else pd.DataFrame()
                  for t in (transfer, evaluations, transfer_settings, diagnostics)]
        return cls(jobs, summary, *tables)

    @property
    def datasets(self) -> list[str]:
        return sorted(self.jobs["data"].unique())

    def job_ids(self, setting: "Setting", data: str) -> list[str]:
        return [row.job_id for row in self.jobs.itertuples() if row.data == data and setting.matches(row.config)]


def lookup(config: Mapping[str, Any], dotted: str) -> Any:
    """config["a"]["b"] for "a.b"; None when a key is missing."""
    value: Any = config
    for key in dotted.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def same(value: Any, wanted: Any) -> bool:
    if isinstance(wanted, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return math.isclose(value, wanted, rel_tol=1e-9, abs_tol=1e-12)
    return value == wanted


@dataclass(frozen=True)
class Setting:
    """The jobs of one of the paper's settings: model and regularizer options plus config values they must have."""

    name: str
    model: str
    regularizer: str = "none"
    where: tuple[tuple[str, Any], ...] = ()     # (dotted config key, required value)
    digits: tuple[int, ...] | None = None       # data.digits; None: every class

    def matches(self, config: Mapping[str, Any]) -> bool:
        choices = config.get("choices") or {}
        digits = lookup(config, "data.digits")
        # Harness's own model class: `model._target_=mylab.Net` on top of model=softmax is not the paper's softmax
        own = str(lookup(config, "model._target_") or "").startswith("pipeline.models.")
        return (own and choices.get("model") == self.model and choices.get("regularizer") == self.regularizer
                and (tuple(digits) if digits else None) == self.digits
                and all(same(lookup(config, key), value) for key, value in self.where))
