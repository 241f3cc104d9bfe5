"""Rebuild the report of an existing sweep: `python -m jobs.report dir=outputs/sweeps/<name> [wandb.report=true]`."""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from pipeline.cli import entry_point, exit_on_config_error


@hydra.main(version_base="1.3", config_path="../conf", config_name="stage")
@exit_on_config_error
def report(stage: DictConfig) -> None:
    from pipeline.stages.report import print_summary, report_stage
    from pipeline.stages.sweep_dir import SUMMARY, TRANSFER, open_sweep, read_table

    cfg, sweep_dir, jobs = open_sweep(stage)
    path = report_stage(cfg, sweep_dir, jobs, read_table(sweep_dir / TRANSFER))
    print_summary(sweep_dir / SUMMARY, path)
    if cfg.wandb.report:
        from pipeline.report.wandb_report import publish_report

        publish_report(sweep_dir, jobs, cfg.sweep.name)


main = entry_point(report)

if __name__ == "__main__":
    main()
