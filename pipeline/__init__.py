"""Harness: adversarial-example benchmarks, from one training job to a distributed sweep."""
from pipeline.store import load_model

__all__ = ["load_model"]
