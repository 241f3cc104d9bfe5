"""Models trained elsewhere (`model=pretrained`), evaluated without training: a TorchScript or torch.export file,
a state_dict file with its class (`model.architecture`), or another Harness job directory.

Files from elsewhere are data: a state_dict is read with `torch.load(weights_only=True)`, and a pickle that
carries code is refused. TorchScript and torch.export files are programs: trust them as you trust code.

A pretrained job's id holds the file's sha256, not its path (pipeline.models.model_file): a changed file is evaluated
again, a moved one is not. The job directory keeps a copy of the file (`pretrained<suffix>`), so `load_model`
needs nothing outside it.
"""
from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from pipeline.errors import ConfigError, one_line
from pipeline.models.model_file import kind, source

COPY = "pretrained"   # the job directory's copy of the file: pretrained<suffix>


class Exported(nn.Module):
    """A torch.export program. Its graph was fixed when it was exported (dropout and batch norm included), so
    train() and eval() only set the flag: the program itself refuses them."""

    def __init__(self, program: nn.Module) -> None:
        super().__init__()
        self.program = program

    def train(self, mode: bool = True) -> "Exported":
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.program(x)


def weights(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict from a file, read as data (a dict holding one under "state_dict" or "model" is accepted)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:   # the file asks to import or call something: it carries code
        called = re.search(r"GLOBAL (\S+)", str(error))
        raise ConfigError(f"model.path={path} is refused: a pickle that carries code"
                          + (f" (it calls {called.group(1)})" if called else "")
                          + "; Harness reads weights only: save torch.save(model.state_dict(), path), or a "
                          "TorchScript or torch.export file") from None
    except Exception as error:  # noqa: BLE001 - whatever torch.load says of a file that is not its own, one line
        raise ConfigError(f"model.path={path} is not a torch file ({type(error).__name__}: "
                          f"{one_line(error, 200)}); give a TorchScript, torch.export or "
                          "state_dict file") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"model.path={path} holds a {type(state).__name__}, not a state_dict (names → tensors)")
    return state


def load(path: str, architecture: Mapping[str, Any] | None = None, input_shape: Sequence[int] | None = None,
         num_classes: int | None = None) -> nn.Module:
    """The model in a file or job directory, in eval mode (`model=pretrained`)."""
    from pipeline import store
    from pipeline.models.build import build_model

    path_ = source(path)
    found = kind(path_)
    if found == "job":
        return store.load_model(path_)
    if found == "torchscript":
        with warnings.catch_warnings():   # torch's "torch.jit.load is deprecated" would come before any error
            warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")
            return torch.jit.load(str(path_), map_location="cpu").eval()
    if found == "export":
        return Exported(torch.export.load(str(path_)).module()).eval()
    state = weights(path_)
    if not architecture:
        raise ConfigError(f"model.path={path} holds weights only; name their class with "
                          "+model.architecture._target_=<module.Class> (and its arguments as "
                          "+model.architecture.<key>=<value>)")
    model = build_model(architecture, input_shape or [], num_classes or 0)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        found = mismatch(state, model) or one_line(error, 200)
        raise ConfigError(f"model.path={path} does not fit model.architecture {architecture['_target_']}: "
                          f"{found}") from None
    return model.eval()


def mismatch(state: Mapping[str, torch.Tensor], model: nn.Module) -> str | None:
    """Where a state_dict does not fit a model, in one short phrase: the first key whose shapes differ, else the
    first key only one of them has (torch's own message lists every key, in one line of thousands of characters)."""
    own = model.state_dict()
    for key, tensor in state.items():
        if key in own and own[key].shape != tensor.shape:
            return f"{key} is {list(tensor.shape)} in the file, {list(own[key].shape)} in the model"
    missing, unexpected = [k for k in own if k not in state], [k for k in state if k not in own]
    if missing:
        return f"the file has no {missing[0]} (nor {len(missing) - 1} other keys of the model)"
    if unexpected:
        return f"the model has no {unexpected[0]} (nor {len(unexpected) - 1} other keys of the file)"
    return None


def keep(job_dir: Path, node: Mapping[str, Any]) -> dict[str, Any]:
    """Copy the pretrained file into the job directory; returns the model config that rebuilds the model from the
    copy (its path relative to the job directory). A job directory's checkpoint and copies are taken as they are.
    Only regular files are copied (a symlink in someone else's job directory is refused), never more readable than
    they were."""
    from pipeline import store

    path = source(node["path"])
    if path.is_dir():
        for file in [path / store.CHECKPOINT, *path.glob(f"{COPY}*")]:
            store.copy_regular(file, job_dir / file.name)
        return {}
    copy = f"{COPY}{''.join(path.suffixes)}"
    store.copy_regular(path.resolve(), job_dir / copy)   # the file the user named, through their own link
    return {**node, "path": copy}
