"""Recompute the transfer stage of an existing sweep: `python -m jobs.transfer dir=outputs/sweeps/<name>`."""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from pipeline.cli import entry_point, exit_on_config_error


@hydra.main(version_base="1.3", config_path="../conf", config_name="stage")
@exit_on_config_error
def transfer(stage: DictConfig) -> None:
    from pipeline import sweep as stages

    cfg, sweep_dir, jobs = stages.open_sweep(stage)
    stages.connect_cluster(cfg)
    table = stages.transfer_stage(cfg, sweep_dir, jobs, force=True)
    print(f"transfer: {len(table)} rows in {sweep_dir / stages.TRANSFER}")


main = entry_point(transfer)

if __name__ == "__main__":
    main()
