"""One training job: `python -m jobs.train [model=maxout regularizer=adversarial ...]`, or `-m` for a multirun
(`-m hydra/launcher=ray`: its jobs in parallel on Ray). `--help` lists the config groups (conf/hydra/help/)."""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from pipeline.cli import entry_point, exit_on_config_error
from pipeline.config import CONF_DIR


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
@exit_on_config_error
def train(cfg: DictConfig) -> float:
    from pipeline.cluster import ray_node
    from pipeline.config import choices
    from pipeline.training.job import run_job

    hydra_cfg = HydraConfig.get()
    runtime = hydra_cfg.runtime
    with open_dict(cfg):
        cfg.choices = choices(runtime.choices, cfg.model)
        if wants_progress_bar(hydra_cfg):
            cfg.trainer.enable_progress_bar = True
    job_dir = Path(runtime.output_dir)
    metrics = run_job(cfg, job_dir, run_name="-".join(str(v) for v in cfg.choices.values()), extra=ray_node())
    row = {r["eps"]: r["error"] for r in metrics["curve"]}
    print(f"clean error {metrics['clean_error']:.2%}; FGSM error " +
          ", ".join(f"ε={eps:g}: {error:.1%}" for eps, error in row.items()) + f"\nresults in {job_dir}")
    return metrics["clean_error"]


def wants_progress_bar(hydra_cfg: DictConfig) -> bool:
    """Lightning's progress bar for one job run in a terminal (it draws on stdout); never in a multirun, never when
    output goes to a file, and never against a `trainer.enable_progress_bar=...` on the command line."""
    set_by_user = any(o.lstrip("+~").partition("=")[0] == "trainer.enable_progress_bar"
                      for o in hydra_cfg.overrides.task)
    return hydra_cfg.mode == RunMode.RUN and not set_by_user and sys.stdout.isatty() and sys.stderr.isatty()


main = entry_point(train)

if __name__ == "__main__":
    main()
