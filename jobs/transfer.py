"""Recompute the transfer stage of an existing sweep: `python -m jobs.transfer dir=outputs/sweeps/<name>`."""
from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from pipeline.cli import entry_point, exit_on_config_error
from pipeline.config import CONF_DIR


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="stage")
@exit_on_config_error
def transfer(stage: DictConfig) -> None:
    from pipeline.stages.sweep import connect_cluster
    from pipeline.stages.sweep_dir import TRANSFER, open_sweep
    from pipeline.stages.transfer import transfer_stage

    cfg, sweep_dir, jobs = open_sweep(stage)
    connect_cluster(cfg)
    table, failed = transfer_stage(cfg, sweep_dir, jobs, force=True)
    print(f"transfer: {len(table)} rows in {sweep_dir / TRANSFER}")
    if failed:
        sys.exit(1)   # each failed task was named on stderr


main = entry_point(transfer)

if __name__ == "__main__":
    main()
