"""Job configs for thousands of grid points, composed as Hydra composes them but without composing each one.

Hydra composes a config in two steps: the defaults list (the config-group choices, `model=maxout`, `+paper=rbf`)
builds the config, then the value overrides (`seed=3`, `optimizer.lr=0.1`) are set on it. A sweep has few distinct
combinations of group choices and many of values (seeds, ε, α), so each combination is composed once by Hydra and
resolved; each job's value overrides are then applied to a copy that shares every untouched part with the base
(the path to a changed key is copied, nothing else). For a composed config without interpolations this is what
Hydra's own override step does (`ConfigLoaderImpl._apply_overrides_to_config`); the first job of every combination
is composed by Hydra too and compared, and a combination where the two differ (or whose config has
interpolations) is composed by Hydra for every job. Treat the returned configs as read-only: they share parts.
"""
from __future__ import annotations

import json
from functools import lru_cache
from typing import Any, Sequence

from omegaconf import OmegaConf

from pipeline.config import compose_job, group_options, is_group, model_name
from pipeline.errors import ConfigError


@lru_cache(maxsize=None)
def parse(override: str):
    """One override, parsed by Hydra's grammar (cached: grid points repeat the same strings)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return OverridesParser.create().parse_override(override)
    except HydraException as error:
        raise ConfigError(f"invalid override {override!r}: {str(error).splitlines()[0]}") from None


def is_group_override(override: str) -> bool:
    """`model=maxout`, `+paper=rbf`: chooses a config of a group (a value override sets a key instead)."""
    parsed = parse(override)
    return is_group(parsed.key_or_group) and not isinstance(parsed.value(), dict)


def check_option(override: str) -> None:
    """A group override must name one of the group's YAML files: say which ones exist, in one line."""
    parsed = parse(override)
    value = parsed.value()
    group = parsed.key_or_group
    if value == [] or value == "":
        raise ConfigError(f"{override!r} chooses no {group}; give one of: {', '.join(group_options(group))}")
    if isinstance(value, str) and value not in group_options(group) and "/" not in group:
        options = ", ".join(group_options(group))
        raise ConfigError(f"unknown {group} '{value}' in {override!r}; choose one of: {options}")


def has_interpolation(value: Any) -> bool:
    if isinstance(value, str):
        return "${" in value
    if isinstance(value, dict):
        return any(has_interpolation(v) for v in value.values())
    if isinstance(value, list):
        return any(has_interpolation(v) for v in value)
    return False


def merged(old: Any, new: Any) -> Any:
    """OmegaConf.update(merge=True): a dict merges into a dict key by key; anything else replaces."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = dict(old)
        for key, value in new.items():
            out[key] = merged(out.get(key), value)
        return out
    return new


def with_value(config: dict[str, Any], override: str) -> dict[str, Any]:
    """A copy of `config` with one value override applied (`key=v`, `+key=v`, `++key=v`), copying only the path
    to the key. Raises ConfigError where Hydra would refuse the override."""
    parsed = parse(override)
    key, value = parsed.key_or_group, parsed.value()
    parts = key.split(".")
    top = dict(config)
    node = top
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if not isinstance(child, dict):
            if not parsed.is_force_add() and not parsed.is_add():
                raise missing_key(override, ".".join(parts[: i + 1]))
            child = {}
        node[part] = node = dict(child)
    last = parts[-1]
    if parsed.is_add() and node.get(last) is not None and not isinstance(value, (dict, list)):
        raise ConfigError(f"{override!r}: {key} is already in the job config; drop the + to change it")
    if not (parsed.is_add() or parsed.is_force_add()) and last not in node:
        raise missing_key(override, key)
    node[last] = merged(node.get(last), value)
    return top


def missing_key(override: str, key: str) -> ConfigError:
    return ConfigError(f"{override!r}: {key} is not a key of the job config (conf/config.yaml and its groups); "
                       f"add a new key with +{override.lstrip('+')}")


def simple(override: str) -> bool:
    """An override the fast path applies exactly: set, add or force-add a dotted key to a plain value."""
    from hydra.core.override_parser.types import OverrideType

    parsed = parse(override)
    return (parsed.type in (OverrideType.CHANGE, OverrideType.ADD, OverrideType.FORCE_ADD) and parsed.package is None
            and all(part.isidentifier() for part in parsed.key_or_group.split("."))
            and not has_interpolation(parsed.value()))


class Composer:
    """Resolved job configs (plain dicts, `choices` filled in) for lists of overrides; the caller is inside a Hydra
    context. `composed` counts Hydra compositions (the benchmark and tests read it)."""

    def __init__(self, config_name: str = "config") -> None:
        self.config_name = config_name
        self.bases: dict[tuple[str, ...], dict[str, Any] | None] = {}   # None: compose every job of it with Hydra
        self.composed = 0

    def compose(self, overrides: Sequence[str]):
        self.composed += 1
        return compose_job(overrides, self.config_name)

    def hydra(self, overrides: Sequence[str]) -> dict[str, Any]:
        return OmegaConf.to_container(self.compose(overrides), resolve=True)

    def __call__(self, overrides: Sequence[str]) -> dict[str, Any]:
        kinds = [is_group_override(o) for o in overrides]
        groups = tuple(o for o, group in zip(overrides, kinds) if group)
        values = [o for o, group in zip(overrides, kinds) if not group]
        if groups not in self.bases:
            for override in groups:
                check_option(override)
            return self.first(groups, overrides, values)
        base = self.bases[groups]
        if base is None or not all(simple(o) for o in values):
            return self.hydra(overrides)
        return self.apply(base, values)

    def apply(self, base: dict[str, Any], values: Sequence[str]) -> dict[str, Any]:
        config = base
        for override in values:
            config = with_value(config, override)
        model, before = config.get("model") or {}, base.get("model") or {}
        if all(model.get(key) == before.get(key) for key in ("_target_", "name")):
            return {**config, "choices": base["choices"]}   # as compose_job: choices come from the groups
        # a value override named another class or a zoo member: results name the model by it (model_name)
        return {**config, "choices": {**base["choices"], "model": model_name(None, model)}}

    def first(self, groups: tuple[str, ...], overrides: Sequence[str], values: Sequence[str]) -> dict[str, Any]:
        """The first job of a combination: composed by Hydra, and the fast path checked against it (which also
        names a bad value override in one line before Hydra does, over several)."""
        cfg = self.compose(groups)
        base = OmegaConf.to_container(cfg, resolve=True)
        exact_path = all(simple(o) for o in values) and not has_interpolation(OmegaConf.to_container(cfg))
        fast = self.apply(base, values) if exact_path else None
        exact = self.hydra(overrides)
        same = fast is not None and json.dumps(fast) == json.dumps(exact)
        self.bases[groups] = base if same else None
        return fast if same else exact   # the fast one shares its untouched parts with the base
