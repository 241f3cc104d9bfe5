"""A sweep's settings in the report's tables: each job's setting, the checks flagged per setting, the ⚑ of a
setting that has not learned, and numbers over seeds as mean ± 95% interval."""
from __future__ import annotations

import math
from typing import Collection, Sequence

import pandas as pd

from pipeline.stats import estimate, percent

# The diagnostics that say a model has not learned: its numbers under attack carry ⚑ wherever they are shown.
CHANCE = ("chance_error", "chance_confidence")


NOT_LEARNED = ("⚑ after an error under attack: some job of that model has not learned (its clean error or mean "
               "confidence is near chance: the chance_error and chance_confidence diagnostics), so the number says "
               "nothing of its robustness. Train it longer or with another optimizer.")


def job_settings(summary: pd.DataFrame) -> pd.Series:
    """job id -> its setting."""
    return summary.drop_duplicates("job_id").set_index("job_id")["setting"]


def flagged_checks(diagnostics: pd.DataFrame, settings: pd.Series, checks: Sequence[str] | None = None
                   ) -> pd.Series:
    """setting -> the checks (of `checks`; None: any) flagged on some of its jobs, comma-separated; settings
    with none are left out."""
    if diagnostics.empty:
        return pd.Series(dtype=str)
    flagged = diagnostics[diagnostics["flag"].astype(bool)
                          & (diagnostics["check"].isin(checks) if checks is not None else True)]
    named = flagged.assign(setting=settings.reindex(flagged["job_id"]).to_numpy())
    return named.groupby("setting")["check"].agg(lambda found: ", ".join(sorted(set(found))))


def mark_not_learned(table: pd.DataFrame, columns: Sequence[str], not_learned: Collection[str]) -> pd.DataFrame:
    """The cells of `columns` (errors under attack) in the rows of settings that have not learned, with ⚑; the
    table's index is the setting."""
    rows = table.index.isin(list(not_learned))
    for column in columns:
        table.loc[rows, column] = table.loc[rows, column].map(lambda cell: cell if cell == "–" else f"{cell} ⚑")
    return table


def interval(values: pd.Series) -> str:
    """Mean ± 95% interval over seeds, as a percentage ("–" without a finite value)."""
    found = estimate(values)
    return "–" if found is None else with_interval(found.mean, found.half)


def with_interval(mean: float, half: float) -> str:
    return percent(mean) if math.isnan(half) else f"{100 * mean:.1f} ± {100 * half:.1f}%"


def eps_interval(values: pd.Series, unbounded: str) -> str:
    """An ε over seeds: mean ± 95% interval, `unbounded` when some seed has none (inf)."""
    if not values.map(math.isfinite).all():
        return unbounded
    found = estimate(values)
    return f"{found.mean:.3g}" + ("" if math.isnan(found.half) else f" ± {found.half:.2g}")
