"""Configs: where conf/ lives, its groups and their options, the group choices a job records, and `instantiate`.

Every command, the planner and the tests compose jobs from the same place with the same helpers.
"""
from __future__ import annotations

from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from omegaconf import DictConfig, open_dict

from pipeline.errors import ConfigError, one_line


def _conf_dir() -> Path:
    """conf/: pipeline/conf in an installed wheel (pyproject.toml maps it there), else the checkout's top folder."""
    here = Path(__file__).resolve().parent
    installed = here / "conf"
    return installed if installed.is_dir() else here.parent / "conf"


CONF_DIR = _conf_dir()   # every Hydra app (config_path), the planner and the tests compose from here
GROUPS = ("data", "model", "regularizer", "attack", "optimizer")   # the choices a job records (its "setting")


def group_options(group: str) -> list[str]:
    """The options of a config group: one per YAML file in conf/<group>."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def is_group(name: str) -> bool:
    return (CONF_DIR / name).is_dir()


def choices(runtime_choices: Mapping[str, Any], model: Mapping[str, Any]) -> dict[str, Any]:
    """The group options a job was composed from (Hydra's `hydra.runtime.choices`), for GROUPS, the model named as
    results name it (`model_name`)."""
    chosen = {group: runtime_choices.get(group) for group in GROUPS}
    return {**chosen, "model": model_name(chosen["model"], model)}


@cache
def option_target(group: str, option: str) -> str | None:
    """The `_target_` of a group option's YAML (None: it has none)."""
    from omegaconf import OmegaConf

    path = CONF_DIR / group / f"{option}.yaml"
    return OmegaConf.load(path).get("_target_") if path.is_file() else None


def model_name(option: str | None, model: Mapping[str, Any]) -> str | None:
    """How results name a model (choices.model, summary.csv, W&B, the report): a zoo member by its name, a class
    set with `model._target_=<module.Class>` by that import path, else the model group's option (`softmax`)."""
    if model.get("name"):
        return str(model["name"])
    target = model.get("_target_")
    return option if option is not None and target == option_target("model", option) else target


def instantiate(node: DictConfig | Mapping[str, Any], name: str, origin: str | Path | None = None,
                **kwargs: Any) -> Any:
    """hydra.utils.instantiate that surfaces our ConfigError (the one-line message) instead of Hydra's wrapper.
    `origin`: the file the node was read from; its targets are checked first (pipeline.trust), nothing is called."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as hydra_instantiate
    from omegaconf.errors import MissingMandatoryValue

    if origin is not None:
        from pipeline import trust

        trust.check(node, name, origin)
    try:
        return hydra_instantiate(node, **kwargs)
    except MissingMandatoryValue as error:   # a `???` in the option's YAML: a key the user must set
        raise ConfigError(f"{error.full_key} is required here; set it, e.g. {error.full_key}=<value>") from None
    except InstantiationException as error:
        cause = error.__cause__
        while cause is not None and not isinstance(cause, ConfigError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        raise ConfigError(f"cannot build {name}: {with_cause(error)}") from error


def with_cause(error: BaseException) -> str:
    """Hydra's first line ("Error in call to target 'mylab.Net':") and, on the same line, what went wrong."""
    head = str(error).splitlines()[0].replace(", set env var HYDRA_FULL_ERROR=1 to see chained exception.", ":")
    cause = error.__cause__
    if cause is None:
        return head
    return f"{head} {type(cause).__name__}: {one_line(cause)}"


@contextmanager
def hydra_context() -> Iterator[None]:
    """Hydra's compose API over conf/ (for planners and tests; Hydra apps have their own context)."""
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield


def compose_job(overrides: Sequence[str], config_name: str = "config") -> DictConfig:
    """One job's config as `python -m jobs.train <overrides>` composes it, `choices` filled in; the caller is
    inside a Hydra context (`hydra_context()`)."""
    from hydra import compose
    from hydra.errors import HydraException

    try:
        cfg = compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
    except HydraException as error:
        raise ConfigError(f"cannot compose a job from {list(overrides)}: {str(error).splitlines()[0]}") from None
    chosen = choices(cfg.hydra.runtime.choices, cfg.get("model") or {})   # a sweep's config has no model
    with open_dict(cfg):
        del cfg["hydra"]
        cfg.choices = chosen
    return cfg
