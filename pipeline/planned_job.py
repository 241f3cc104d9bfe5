"""A planned job of a sweep: its id, its grid point and its resolved config. What the planner makes and every stage,
the report and W&B read, so it lives below all of them."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

ID = re.compile(r"[0-9a-f]{12}")   # a job id: the first 12 hex digits of a sha256 (stages.plan.job_id)


@dataclass(frozen=True)
class Job:
    id: str
    overrides: tuple[str, ...]      # the grid point, as Hydra overrides
    config: dict[str, Any]          # resolved job config

    @property
    def label(self) -> str:
        """Human-readable name: the grid point's values."""
        return ",".join(o.split("=", 1)[1] for o in self.overrides) or self.id

    @property
    def setting(self) -> str:
        """The grid point without its seed: the jobs that a mean over seeds groups together."""
        return ",".join(o.split("=", 1)[1] for o in self.overrides if not o.startswith("seed=")) or "all"

    @property
    def of_the_paper(self) -> bool:
        """Whether the grid point picks one of the paper's settings (a `+paper=` option: its claims judge it)."""
        return any(o.startswith("+paper=") for o in self.overrides)
