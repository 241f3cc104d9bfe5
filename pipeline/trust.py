"""What a file may make Harness call. A job or sweep folder may have been written by someone else (shared storage),
so a config read back from one (a job's model.pt or config.yaml, a sweep's plan.json or sweep.yaml, a zoo member)
is data: each `_target_` in it, at any depth, must be a class of the kind its place expects, and no value may be an
interpolation (`${...}`, which OmegaConf would resolve). The check imports the target's module, never calls it.
"""
from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Any, Iterator, Mapping

from pipeline.errors import ConfigError

# The classes each place may name (a subclass of one of them), by the first part of its config key.
KINDS = {
    "model": ("torch.nn.Module",),
    "data": ("pipeline.data.TensorDataModule",),
    "attack": ("pipeline.attacks.base.Attack",),
    "evaluation": ("pipeline.attacks.base.Attack",),   # evaluation.attacks.<name>
    "regularizer": ("pipeline.regularizers.Regularizer",),
    "optimizer": ("torch.optim.Optimizer",),
    "scheduler": ("torch.optim.lr_scheduler.LRScheduler",),
    "callbacks": ("pytorch_lightning.Callback",),
    "trainer": ("pytorch_lightning.Trainer",),
    "logger": ("pipeline.tracking.Tracker", "pytorch_lightning.loggers.Logger"),   # Tracker first: no Lightning
}
# Functions a file may still name: Harness's own loader of files trained elsewhere (it checks what it loads).
FUNCTIONS = {"model": ("pipeline.pretrained.load",)}
# What data.source may name: Harness's own sources (TensorDataModule calls it).
SOURCES = ("pipeline.data.mnist5k", "pipeline.data.mnist", "pipeline.data.cifar10", "pipeline.data.fashion_mnist",
           "pipeline.sources.folder", "pipeline.sources.arrays", "pipeline.sources.torchvision")


def check(node: Mapping[str, Any], place: str, origin: str | Path) -> None:
    """Refuse, in one line naming `origin` and the value, a config node read from a file whose `_target_`s are
    not classes of the kind `place` ("model", "data", "logger.wandb", ...) expects, or that holds an
    interpolation. Nothing in it is called."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(node, DictConfig):   # its values as written: reading them through OmegaConf would resolve them
        node = OmegaConf.to_container(node, resolve=False)
    kind = place.split(".")[0]
    if kind not in KINDS:
        raise ValueError(f"no kind of class is known for {place}")   # a caller's mistake, not the file's
    plain_values(node, origin, place)
    for key, value in leaves(node, place):
        if key.endswith("._target_"):
            problem = target_problem(str(value), kind, top=key == f"{place}._target_")
            if problem:
                raise refused(origin, key, value, problem)
        if kind == "data" and key == f"{place}.source" and value not in SOURCES:
            raise refused(origin, key, value, f"not one of Harness's data sources ({', '.join(SOURCES)})")


def plain_values(node: Any, origin: str | Path, prefix: str = "") -> None:
    """Refuse a whole file's config (config.yaml, sweep.yaml) that holds an interpolation anywhere."""
    for key, value in leaves(node, prefix):
        if isinstance(value, str) and "${" in value:
            raise refused(origin, key, value, "an interpolation; a saved config holds plain values")


def leaves(node: Any, key: str) -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every value in nested dicts and lists (list items as key.<index>)."""
    if isinstance(node, Mapping):
        for name, value in node.items():
            yield from leaves(value, f"{key}.{name}" if key else str(name))
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            yield from leaves(value, f"{key}.{index}")
    else:
        yield key, node


def refused(origin: str | Path, key: str, value: Any, why: str) -> ConfigError:
    return ConfigError(f"{origin}: {key}={value} is refused: {why}; a file is data: Harness calls only a class of "
                       "the kind its place expects")


@functools.cache
def target_problem(target: str, kind: str, top: bool) -> str | None:
    """What is wrong with `target` in a place of `kind` (None: a class of that kind)."""
    from hydra._internal.utils import _locate

    if top and target in FUNCTIONS.get(kind, ()):
        return None
    try:
        found = _locate(target)   # imports the module; calls nothing in it
    except Exception as error:  # noqa: BLE001 - whatever importing it raised, the file's target is refused
        return f"it cannot be imported ({type(error).__name__})"
    bases = KINDS[kind]
    if not inspect.isclass(found):
        return f"a {type(found).__name__}, not a class ({' or '.join(bases)} subclass expected)"
    if not any(issubclass(found, _locate(base)) for base in bases):
        return f"a class of another kind ({' or '.join(bases)} subclass expected)"
    return None
