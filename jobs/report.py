"""Rebuild the report of an existing sweep: `python -m jobs.report dir=outputs/sweeps/<name> [wandb.report=true]`."""
from __future__ import annotations

import hydra
import pandas as pd
from omegaconf import DictConfig

from pipeline.cli import entry_point, exit_on_config_error


@hydra.main(version_base="1.3", config_path="../conf", config_name="stage")
@exit_on_config_error
def report(stage: DictConfig) -> None:
    from pipeline import sweep as stages

    cfg, sweep_dir, jobs = stages.open_sweep(stage)
    transfer_csv = sweep_dir / stages.TRANSFER
    transfer = pd.read_csv(transfer_csv) if transfer_csv.exists() else pd.DataFrame()
    path = stages.report_stage(cfg, sweep_dir, jobs, transfer)
    stages.print_summary(sweep_dir / stages.SUMMARY, path)
    if cfg.wandb.report:
        from pipeline.wandb_report import publish_report

        publish_report(sweep_dir, jobs, cfg.sweep.name)


main = entry_point(report)

if __name__ == "__main__":
    main()
