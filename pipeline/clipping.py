"""How tables name a clipping: evaluations.csv, summary.csv and the report read the same word (no torch here)."""
from __future__ import annotations

from typing import Sequence


def clip_name(clip: Sequence[float] | None) -> str:
    """How evaluations.csv names a clipping: "none" (the paper's unclipped attack) or e.g. "0-1"."""
    return "none" if clip is None else f"{clip[0]:g}-{clip[1]:g}"
