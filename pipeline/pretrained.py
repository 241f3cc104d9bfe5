"""Models trained elsewhere (`model=pretrained`), evaluated without training: a TorchScript or torch.export file,
a state_dict file with its class (`model.architecture`), or another Harness job directory.

Files from elsewhere are data: a state_dict is read with `torch.load(weights_only=True)`, and a pickle that
carries code is refused. TorchScript and torch.export files are programs: trust them as you trust code.

A pretrained job's id holds the file's sha256, not its path: a changed file is evaluated again, a moved one is not.
The job directory keeps a copy of the file (`pretrained<suffix>`), so `load_model` needs nothing outside it.
"""
from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from pipeline.errors import ConfigError

TARGET = "pipeline.pretrained.load"
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


def is_pretrained(node: Mapping[str, Any]) -> bool:
    return node.get("_target_") == TARGET


def source(path: str | Path) -> Path:
    """The file or job directory, which must exist."""
    from pipeline.sources import absolute

    found = Path(absolute(str(path)))
    if not found.exists():
        raise ConfigError(f"model.path={path}: no such file or folder; give a TorchScript or torch.export file, "
                          "a state_dict file (with model.architecture) or a Harness job directory")
    return found


def fingerprint(path: Path) -> str:
    """The sha256 of the file (of a job directory: of its checkpoint)."""
    from pipeline import store

    return store.sha256(path / store.CHECKPOINT if path.is_dir() else path)


def pinned(config: dict[str, Any]) -> dict[str, Any]:
    """A job config with its pretrained file's path made absolute (Ray workers run elsewhere) and its sha256
    recorded; other configs unchanged."""
    model = config.get("model") or {}
    if not is_pretrained(model):
        return config
    path = source(model["path"])
    return {**config, "model": {**model, "path": str(path), "sha256": fingerprint(path)}}


def identity(config: dict[str, Any]) -> dict[str, Any]:
    """What names a job: its config with the pretrained file's path left out (its sha256 stays)."""
    model = config.get("model") or {}
    return {**config, "model": {**model, "path": None}} if is_pretrained(model) and "sha256" in model else config


def kind(path: Path) -> str:
    """torchscript, export, job or weights, from what the file holds."""
    if path.is_dir():
        return "job"
    if zipfile.is_zipfile(path):
        names = zipfile.ZipFile(path).namelist()
        if any(name.endswith("/archive_format") or name.endswith("serialized_exported_program.json")
               or "/models/" in name for name in names):
            return "export"
        if any("/code/" in name or name.endswith("/constants.pkl") for name in names):
            return "torchscript"
    return "weights"


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
    except Exception as error:
        raise ConfigError(f"model.path={path} is not a torch file ({type(error).__name__}: "
                          f"{' '.join(str(error).split())[:200]}); give a TorchScript, torch.export or "
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
    from pipeline.model_build import build_model

    path_ = source(path)
    found = kind(path_)
    if found == "job":
        return store.load_model(path_)
    if found == "torchscript":
        return torch.jit.load(str(path_), map_location="cpu").eval()
    if found == "export":
        return Exported(torch.export.load(str(path_)).module()).eval()
    state = weights(path_)
    if not architecture:
        raise ConfigError(f"model.path={path} holds weights only; name their class with "
                          "model.architecture._target_=<module.Class> (and its arguments as model.architecture.<key>)")
    model = build_model(architecture, input_shape or [], num_classes or 0)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ConfigError(f"model.path={path} does not fit model.architecture {architecture['_target_']}: "
                          f"{' '.join(str(error).split())[:400]}") from None
    return model.eval()


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
