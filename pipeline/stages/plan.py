"""Plan a sweep: Hydra's override grammar expands the grid, each job's config is composed as `hydra.compose`
would (pipeline.stages.composer: once per combination of group choices) and named by a hash of what determines
its results.

The grid (`sweep.grid: {axis: "a,b,c" | "range(3)" | "choice(...)"}`) is expanded by Hydra's own parser and
BasicSweeper, so a sweep runs exactly the jobs `python -m jobs.train -m <same overrides>` would.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping, Sequence

from omegaconf import DictConfig, OmegaConf

from pipeline.errors import ConfigError
from pipeline.planned_job import Job
from pipeline.stages.composer import Composer, with_value

# Keys that do not change a job's results, left out of its id (so renaming a sweep or changing the logger
# does not retrain anything).
NOT_IN_ID = ("logger", "choices", "job_id")
# Keys that enter a job's id only when set: without callbacks (the default) a job keeps the id it had before the
# `callbacks` group existed.
ONLY_WHEN_SET = ("callbacks",)


def flatten(grid: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"optimizer": {"lr": "0.1,0.01"}} -> {"optimizer.lr": "0.1,0.01"}: nested axes are dotted keys."""
    flat: dict[str, Any] = {}
    for key, value in grid.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def grid_overrides(grid: Mapping[str, Any]) -> list[list[str]]:
    """Every grid point as a list of overrides, in `-m` order (Hydra's BasicSweeper does the expansion)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    if not grid:
        raise ConfigError("sweep.grid is empty; name at least one axis, e.g. sweep.grid.model=softmax,maxout")
    axes = []
    for axis, values in flatten(grid).items():
        if values is None or values == "" or (isinstance(values, Sequence) and not isinstance(values, str) and not values):
            raise ConfigError(f"sweep.grid.{axis} is empty; give values like 'a,b' or 'range(3)'")
        if isinstance(values, Sequence) and not isinstance(values, str):
            values = ",".join(str(v) for v in values)
        axes.append(f"{axis}={values}")
    try:
        overrides = OverridesParser.create().parse_overrides(axes)
        batches = BasicSweeper.split_arguments(overrides, None)
    except HydraException as error:
        raise ConfigError(f"invalid sweep.grid {axes}: {str(error).splitlines()[0]}") from None
    points = [point for batch in batches for point in batch]
    if not points:
        raise ConfigError(f"sweep.grid {axes} expands to no jobs")
    return points


def conditional_overrides(point: Sequence[str], when: Mapping[str, Sequence[str]] | None) -> list[str]:
    """Overrides that apply to a grid point: `sweep.when: {"model=rbf": ["optimizer=adam"]}`."""
    return [o for condition, extra in (when or {}).items() if condition in point for o in extra]


def job_id(config: Mapping[str, Any]) -> str:
    significant = {k: v for k, v in config.items() if k not in NOT_IN_ID and (v or k not in ONLY_WHEN_SET)}
    return hashlib.sha256(json.dumps(significant, sort_keys=True, default=str).encode()).hexdigest()[:12]


def plan(sweep: DictConfig, group: str | None = None, composer: Composer | None = None) -> list[Job]:
    """The sweep's jobs: grid points × fixed overrides, composed, resolved and named (duplicates dropped)."""
    composer = composer or Composer()
    fixed = list(sweep.get("overrides") or [])
    when = OmegaConf.to_container(sweep.when) if sweep.get("when") else {}
    jobs: dict[str, Job] = {}
    for point in grid_overrides(OmegaConf.to_container(sweep.grid, resolve=True)):
        config = composer(fixed + conditional_overrides(point, when) + point)
        if group is not None and "wandb" in (config.get("logger") or {}):
            config = with_value(config, f"++logger.wandb.group={json.dumps(group)}")
        identity = job_id(config)
        jobs.setdefault(identity, Job(identity, tuple(point), {**config, "job_id": identity}))
    return list(jobs.values())
