"""A model file a config names (`model=pretrained`): where it is, its sha256, what it holds, and what of it names a
job. No torch here: planning a sweep reads model files without importing it (pipeline.pretrained loads them).
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Mapping

from pipeline.errors import ConfigError

TARGET = "pipeline.pretrained.load"   # the _target_ of model=pretrained (conf/model/pretrained.yaml)


def is_pretrained(node: Mapping[str, Any]) -> bool:
    return node.get("_target_") == TARGET


def source(path: str | Path) -> Path:
    """The file or job directory, which must exist."""
    from pipeline.data_files import absolute

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
