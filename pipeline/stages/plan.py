"""Plan a sweep: Hydra's override grammar expands the grid, each job's config is composed as `hydra.compose`
would (pipeline.stages.composer: once per combination of group choices) and named by a hash of what determines
its results.

The grid (`sweep.grid: {axis: "a,b,c" | "range(3)" | "choice(...)"}`) is expanded by Hydra's own parser and
BasicSweeper, so a sweep runs exactly the jobs `python -m jobs.train -m <same overrides>` would.
"""
from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Mapping, Sequence

from omegaconf import DictConfig, OmegaConf

from pipeline.models import model_file
from pipeline.errors import ConfigError
from pipeline.names import plain_word
from pipeline.planned_job import Job
from pipeline.stages.composer import Composer, with_value

# Keys that do not change a job's results, left out of its id (so renaming a sweep or changing the logger
# does not retrain anything).
NOT_IN_ID = ("logger", "choices", "job_id")
# Where the data lies and whether it may be fetched, not what it is: moving the data retrains nothing.
DATA_PATHS = ("root", "path")
DATA_LOCATION = (*DATA_PATHS, "download")
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


def grid_size(overrides: Sequence[Any]) -> int:
    """How many points parsed grid axes expand to, counted without expanding them."""
    from hydra.core.override_parser.types import ChoiceSweep, RangeSweep

    size = 1
    for override in overrides:
        value = override.value()
        if isinstance(value, RangeSweep):
            size *= max(0, math.ceil((value.stop - value.start) / value.step))
        elif isinstance(value, ChoiceSweep):
            size *= len(value.list)
    return size


def grid_overrides(grid: Mapping[str, Any], max_jobs: int | None = None) -> list[list[str]]:
    """Every grid point as a list of overrides, in `-m` order (Hydra's BasicSweeper does the expansion). A grid of
    more than `max_jobs` points is refused before it is expanded (it would take the machine's memory)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    if not grid:
        raise ConfigError("sweep.grid is empty; name at least one axis, e.g. sweep.grid.model=softmax,maxout")
    axes = []
    for axis, values in flatten(grid).items():
        empty_list = isinstance(values, Sequence) and not isinstance(values, str) and not values
        if values is None or values == "" or empty_list:
            raise ConfigError(f"sweep.grid.{axis} is empty; give values like 'a,b' or 'range(3)'")
        if isinstance(values, Sequence) and not isinstance(values, str):
            values = ",".join(str(v) for v in values)
        axes.append(f"{axis}={values}")
    try:
        overrides = OverridesParser.create().parse_overrides(axes)
        if max_jobs is not None and (size := grid_size(overrides)) > max_jobs:
            raise ConfigError(f"sweep.grid {axes} has {size:,} jobs, more than sweep.max_jobs={max_jobs:,}; use a "
                              "smaller grid, or raise sweep.max_jobs")
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


def data_identity(data: Mapping[str, Any]) -> dict[str, Any]:
    """A data config as a job id counts it: without its location; a user's files (data=folder, data=arrays) by
    their content's sha256."""
    from pipeline.data_files import content_digest

    identity = {k: v for k, v in data.items() if k not in DATA_LOCATION}
    digest = content_digest(data)
    return {**identity, "sha256": digest} if digest else identity


ZOO_MEMBER_KEYS = ("path", "architecture", "normalize")   # of model=pretrained (conf/model/pretrained.yaml)


def zoo_grid(models: Mapping[str, Any] | None, grid: dict[str, Any], when: dict[str, list[str]]
             ) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """experiment=zoo: one grid point per named model (`model.name=<name>`, its name the setting), each with its
    own file, class and normalization (`member_overrides`), beside any other axes of the grid."""
    if not models:
        raise ConfigError("zoo.models is empty; name the models to compare, e.g. 'zoo.models={a: a.pt, b: b.pt}'")
    for name in models:
        plain_word(name, "zoo.models")   # a name becomes a setting and a file name
    points = {f"model.name={name}": member_overrides(name, member) for name, member in models.items()}
    return {**grid, "model.name": ",".join(models)}, {**when, **points}


def member_overrides(name: str, member: Any) -> list[str]:
    """A zoo member's own overrides: a file (`a.pt`), or `{path, architecture, normalize}` for a state_dict with its
    class (and the normalization it was trained behind); what one member says never reaches another."""
    entry = {"path": member} if isinstance(member, str) else member
    if not isinstance(entry, Mapping) or not isinstance(entry.get("path"), str) or set(entry) - set(ZOO_MEMBER_KEYS):
        raise ConfigError(f"zoo.models.{name}={member!r}; give a file, or {{path: <file>, architecture: "
                          "{_target_: <module.Class>, <its arguments>}, normalize: {mean: [..], std: [..]}}")
    return [f"model.{key}={override_value(value)}" for key, value in entry.items()]


def override_value(value: Any) -> str:
    """A value in Hydra's override grammar: strings quoted (paths keep their characters), mappings and lists
    written out."""
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{key}:{override_value(item)}" for key, item in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_value(item) for item in value) + "]"
    if isinstance(value, str):
        return "'" + value.replace("'", "\\'") + "'"
    return json.dumps(value)   # numbers, true, false, null


def job_data_overrides(given: Sequence[str]) -> list[str]:
    """The jobs' data options given on a sweep's command line (`data=arrays data.path=d.npz`): they go to every job,
    after the experiment's own overrides."""
    return [override.lstrip("+") for override in given
            if override.lstrip("+").split("=", 1)[0].split(".")[0] == "data"]


def grid_origin(jobs: Sequence[Job], given: Sequence[str], experiment: str | None) -> str:
    """Where each axis of the planned grid came from, with its size: the command line, or the experiment (so that
    an axis the experiment adds is never a surprise: 'grid: model._target_ 2 (command line) × regularizer 2
    (experiment=main) = 4 jobs')."""
    values: dict[str, set[str]] = {}
    for job in jobs:
        for override in job.overrides:
            axis, _, value = override.partition("=")
            values.setdefault(axis, set()).add(value)
    keys = {o.lstrip("+~").split("=", 1)[0] for o in given}
    on_command_line = {key.removeprefix("sweep.grid.") for key in keys if key.startswith("sweep.grid.")}
    if "zoo.models" in keys:   # a zoo's members are its model.name axis
        on_command_line.add("model.name")

    def origin(axis: str) -> str:
        return "command line" if axis in on_command_line else f"experiment={experiment}"

    axes = " × ".join(f"{axis} {len(found)} ({origin(axis)})" for axis, found in values.items())
    return f"grid: {axes or 'one point'} = {len(jobs)} jobs"


def job_id(config: Mapping[str, Any]) -> str:
    significant = model_file.identity({k: v for k, v in config.items()
                                       if k not in NOT_IN_ID and (v or k not in ONLY_WHEN_SET)})
    if isinstance(significant.get("data"), Mapping):
        significant["data"] = data_identity(significant["data"])
    return hashlib.sha256(json.dumps(significant, sort_keys=True, default=str).encode()).hexdigest()[:12]


def located(config: dict[str, Any]) -> dict[str, Any]:
    """data.root and data.path made absolute here, on the driver: Ray workers and SLURM tasks run elsewhere."""
    from pipeline.data_files import absolute

    data = config.get("data")
    paths = {k: absolute(data[k]) for k in DATA_PATHS if isinstance(data, Mapping) and isinstance(data.get(k), str)}
    return {**config, "data": {**data, **paths}} if paths else config


def plan(sweep: DictConfig, group: str | None = None, composer: Composer | None = None) -> list[Job]:
    """The sweep's jobs: grid points × fixed overrides, composed, resolved and named (duplicates dropped)."""
    composer = composer or Composer()
    fixed = [*(sweep.get("overrides") or []), *(sweep.get("add") or [])]   # the experiment's, then the user's
    when = OmegaConf.to_container(sweep.when, resolve=True) if sweep.get("when") else {}
    grid = OmegaConf.to_container(sweep.grid, resolve=True)
    if "zoo" in sweep:
        models = sweep.zoo
        grid, when = zoo_grid(OmegaConf.to_container(models, resolve=True) if models is not None else None, grid, when)
    jobs: dict[str, Job] = {}
    for point in grid_overrides(grid, sweep.get("max_jobs")):
        config = model_file.pinned(located(composer(fixed + conditional_overrides(point, when) + point)))
        if group is not None and "wandb" in (config.get("logger") or {}):
            config = with_value(config, f"++logger.wandb.group={json.dumps(group)}")
        identity = job_id(config)
        if isinstance(config.get("data"), Mapping):   # its name becomes part of plot file names
            plain_word(config["data"].get("name"), "data.name")
        jobs.setdefault(identity, Job(identity, tuple(point), {**config, "job_id": identity}))
    return list(jobs.values())
