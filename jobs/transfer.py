"""Recompute the transfer stage of an existing sweep: `python -m jobs.transfer dir=outputs/sweeps/<name>`."""
from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from pipeline.cli import one_line_errors


@hydra.main(version_base="1.3", config_path="../conf", config_name="sweep")
def transfer(cfg: DictConfig) -> None:
    from pipeline import sweep as stages

    sweep_dir = Path(cfg.dir)
    jobs = stages.read_plan(sweep_dir)
    stages.connect_cluster(cfg)
    table = stages.transfer_stage(cfg, sweep_dir, jobs, force=True)
    print(f"transfer: {len(table)} rows in {sweep_dir / stages.TRANSFER}")


main = one_line_errors(transfer)

if __name__ == "__main__":
    main()
