"""Rebuild the report of an existing sweep: `python -m jobs.report dir=outputs/sweeps/<name> [wandb.report=true]`."""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from pipeline.cli import entry_point, exit_on_config_error
from pipeline.config import CONF_DIR


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="stage")
@exit_on_config_error
def report(stage: DictConfig) -> None:
    from pipeline.stages.report import print_summary, report_stage
    from pipeline.stages.sweep_dir import SUMMARY, open_sweep

    cfg, sweep_dir, jobs = open_sweep(stage)
    path = report_stage(cfg, sweep_dir, jobs)
    print_summary(sweep_dir / SUMMARY, path)
    if cfg.wandb.report:
        from pipeline.report.wandb_report import publish_report

        publish_report(sweep_dir, jobs, cfg.sweep.name)


main = entry_point(report)

if __name__ == "__main__":
    main()
