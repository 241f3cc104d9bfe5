"""A model from its config, whatever its class: the job's `input_shape` / `num_classes` go only to a constructor
that takes them, Harness's own keys (`stochastic`, `normalize`, `name`, `sha256`) to no constructor, and
`normalize` puts per-channel normalization inside the model, so that attacks work on [0, 1] pixels."""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from pipeline import trust
from pipeline.models import adapter
from pipeline.config import instantiate
from pipeline.errors import ConfigError, one_line

HARNESS_KEYS = ("stochastic", "normalize", "name", "sha256")   # read by Harness, never passed to a constructor


class Normalized(nn.Module):
    """(x − mean) / std per channel, then the model: the model's own cost and probabilities are kept."""

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or min(std) <= 0:
            raise ConfigError(f"model.normalize: mean={list(mean)} and std={list(std)} need one value per channel "
                              "each, std > 0")
        self.net = net
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)

    def cost(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return adapter.cost(self.net, logits, y)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return adapter.probabilities(self.net, logits)


def plain(node: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)


def model_name(node: DictConfig | Mapping[str, Any]) -> str:
    """How messages name a model: its zoo name, its file, or its class."""
    node = plain(node)
    return str(node.get("name") or node.get("path") or node.get("_target_"))


def shape_arguments(target: str, input_shape: Sequence[int], num_classes: int) -> dict[str, Any]:
    """input_shape / num_classes for the constructor's parameters of those names (or its **kwargs)."""
    from hydra._internal.utils import _locate   # hydra.utils.get_object also logs an error of its own

    try:
        parameters = inspect.signature(_locate(target)).parameters
    except (ImportError, AttributeError, ValueError) as error:
        raise ConfigError(f"cannot build model: model._target_={target} cannot be imported "
                          f"({type(error).__name__}: {one_line(error)}); install it or put its folder "
                          "on PYTHONPATH") from None
    except TypeError:   # a builtin without a signature: pass nothing
        return {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    given = {"input_shape": list(input_shape), "num_classes": int(num_classes)}
    return {key: value for key, value in given.items() if takes_any or key in parameters}


def build_model(node: DictConfig | Mapping[str, Any], input_shape: Sequence[int], num_classes: int,
                origin: str | Path | None = None) -> nn.Module:
    """The model of a `model` config node; an error raised while building it is a one-line ConfigError with its
    cause. `origin`: the file the node was read from; its classes are checked before any is built (pipeline.trust)."""
    if origin is not None:
        trust.check(node, "model", origin)
    spec = plain(node)
    if "_target_" not in spec:
        raise ConfigError("model has no _target_; give the class, e.g. model._target_=mylab.nets.Net")
    missing = sorted(OmegaConf.missing_keys(OmegaConf.create(spec)))
    if missing:
        raise ConfigError(f"model.{missing[0]} is not set; give it on the command line, "
                          f"e.g. model.{missing[0]}=<value>")
    normalize = spec.get("normalize")
    constructor = {k: v for k, v in spec.items() if k not in HARNESS_KEYS}
    model = instantiate(constructor, "model", **shape_arguments(spec["_target_"], input_shape, num_classes))
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model._target_={spec['_target_']} built a {type(model).__name__}, not a torch.nn.Module")
    return Normalized(model, normalize["mean"], normalize["std"]) if normalize else model
