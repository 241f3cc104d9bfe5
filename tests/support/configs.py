"""Job configs and data as the commands compose them (Hydra's compose API over conf/)."""
from __future__ import annotations

from omegaconf import DictConfig

from pipeline.config import compose_job, hydra_context


def compose(*overrides: str, config_name: str = "config") -> DictConfig:
    """A job config as `python -m jobs.train <overrides>` composes it, with `choices` filled in the same way."""
    with hydra_context():
        return compose_job(overrides, config_name)


def data_module(*overrides: str):
    from pipeline.config import instantiate

    cfg = compose(*overrides)
    data = instantiate(cfg.data, "data", seed=cfg.seed)
    data.setup()
    return data
