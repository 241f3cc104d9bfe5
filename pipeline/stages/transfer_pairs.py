"""Which jobs the transfer stage pairs: the settings `transfer.sources` and `transfer.targets` name, seed-matched
or all pairs; checked while planning, before Ray starts (no torch here: planning stays light)."""
from __future__ import annotations

from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf

from pipeline.errors import ConfigError
from pipeline.planned_job import Job

PAIRS = ("seed_matched", "all")


def setting_values(job: Job) -> set[str]:
    """What a setting name may say of a job: each value of its grid point and each `key=value`."""
    overrides = [o for o in job.overrides if not o.startswith("seed=")]
    return set(overrides) | {o.split("=", 1)[1] for o in overrides}


def jobs_of_settings(jobs: list[Job], names: Sequence[str] | None, key: str) -> set[str] | None:
    """Ids of the jobs of the named settings (None: all). A name is a setting's values, comma-separated (all must
    match: "maxout,none") or one value ("maxout": every setting that has it); a name matching nothing is an error."""
    if names is None:
        return None
    chosen: set[str] = set()
    for name in [names] if isinstance(names, str) else names:
        wanted = {token.strip() for token in str(name).split(",")}
        matched = {job.id for job in jobs if wanted <= setting_values(job)}
        if not matched:
            settings = sorted({job.setting for job in jobs})
            raise ConfigError(f"{key}: {name!r} matches no setting of this sweep; its settings are "
                              f"{'; '.join(settings)[:300]}")
        chosen |= matched
    return chosen


def pairs(section: DictConfig) -> str:
    """transfer.pairs (a sweep.yaml written before the key existed means seed_matched)."""
    return section.get("pairs", "seed_matched")


def check_transfer(section: DictConfig, jobs: list[Job]) -> None:
    """Refuse bad transfer settings while planning, before Ray starts."""
    if pairs(section) not in PAIRS:
        raise ConfigError(f"transfer.pairs={section.pairs!r}; use seed_matched (a source attacks the targets of its "
                          "own seed: linear in seeds) or all (every pair: quadratic)")
    for key in ("sources", "targets"):
        jobs_of_settings(jobs, listed(section.get(key)), f"transfer.{key}")


def listed(value: Any) -> list[str] | None:
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
