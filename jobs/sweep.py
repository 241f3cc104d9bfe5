"""The main job: plan a grid with Hydra, train it on Ray, build the transfer matrix, the extra evaluations and
the report (pipeline.stages, in that order).

    python -m jobs.sweep                                        # embedded digits, local Ray, W&B offline
    python -m jobs.sweep experiment=<name> cluster.address=auto # an experiment on an existing Ray cluster
    python -m jobs.sweep sweep.grid.seed='range(3)' resources.gpu=0.25 force=true
    python -m jobs.sweep experiment=zoo 'zoo.models={a: a.pt}' data=arrays data.path=d.npz   # the jobs' data
"""
from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from pipeline.cli import entry_point, exit_on_config_error
from pipeline.config import CONF_DIR


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="sweep")
@exit_on_config_error
def sweep(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from pipeline.stages.sweep import run_sweep

    hydra_cfg = HydraConfig.get()
    code = run_sweep(cfg, list(hydra_cfg.overrides.task), hydra_cfg.runtime.choices.get("experiment"))
    if code:
        sys.exit(code)


main = entry_point(sweep)

if __name__ == "__main__":
    main()
