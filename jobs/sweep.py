"""The main job: plan a grid with Hydra, train it on Ray, build the transfer matrix, the extra evaluations and
the report.

    python -m jobs.sweep                                        # embedded digits, local Ray, W&B offline
    python -m jobs.sweep experiment=<name> cluster.address=auto # an experiment on an existing Ray cluster
    python -m jobs.sweep sweep.grid.seed='range(3)' resources.gpu=0.25 force=true
"""
from __future__ import annotations

import sys
import time

import hydra
from omegaconf import DictConfig

from pipeline.cli import entry_point, exit_on_config_error


@hydra.main(version_base="1.3", config_path="../conf", config_name="sweep")
@exit_on_config_error
def sweep(cfg: DictConfig) -> None:
    from pipeline import sweep as stages

    started = time.monotonic()
    sweep_dir, jobs = stages.plan_stage(cfg)
    print(f"[sweep] {len(jobs)} jobs planned in {sweep_dir}", file=sys.stderr)
    if cfg.plan_only:
        for index, job in enumerate(jobs):
            print(f"{index}\t{job.id}\t{' '.join(job.overrides)}")
        return
    if cfg.task is not None:   # one SLURM array task: no Ray, no later stages
        trained = stages.train_one(cfg, sweep_dir, jobs, int(cfg.task))
        print(f"[sweep] task {cfg.task}: {'trained' if trained else 'already complete'}", file=sys.stderr)
        return
    stages.connect_cluster(cfg)
    outcome = stages.train_stage(cfg, sweep_dir, jobs)
    print(f"[sweep] trained {len(outcome.trained)}, reused {len(outcome.reused)}, failed {len(outcome.failed)}",
          file=sys.stderr)
    transfer = stages.transfer_stage(cfg, sweep_dir, jobs) if cfg.transfer.enabled else stages.pd.DataFrame()
    if cfg.evaluation.enabled:
        stages.evaluation_stage(cfg, sweep_dir, jobs)
    report = stages.report_stage(cfg, sweep_dir, jobs, transfer)
    stages.print_summary(sweep_dir / stages.SUMMARY, report)
    print(f"[sweep] finished in {time.monotonic() - started:.0f}s", file=sys.stderr)
    if outcome.failed:
        for job_id, reason in outcome.failed.items():
            print(f"[sweep] job {job_id} failed: {reason}", file=sys.stderr)
        sys.exit(1)


main = entry_point(sweep)

if __name__ == "__main__":
    main()
