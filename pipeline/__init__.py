"""Harness: adversarial-example benchmarks, from one training job to a distributed sweep."""
from typing import Any

__all__ = ["load_model"]


def __getattr__(name: str) -> Any:
    """`pipeline.load_model`, imported when first used: importing any pipeline module (the Hydra launcher in every
    Ray task, say) then costs no torch import."""
    if name == "load_model":
        from pipeline.store import load_model

        return load_model
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
