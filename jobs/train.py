"""One training job: `python -m jobs.train [model=maxout regularizer=adversarial ...]`, or `-m` for a multirun."""
from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from pipeline.cli import entry_point, exit_on_config_error


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@exit_on_config_error
def train(cfg: DictConfig) -> float:
    from pipeline.config import choices
    from pipeline.job import run_job

    runtime = HydraConfig.get().runtime
    with open_dict(cfg):
        cfg.choices = choices(runtime.choices)
    job_dir = Path(runtime.output_dir)
    metrics = run_job(cfg, job_dir, run_name="-".join(str(v) for v in cfg.choices.values()))
    row = {r["eps"]: r["error"] for r in metrics["curve"]}
    print(f"clean error {metrics['clean_error']:.2%}; FGSM error " +
          ", ".join(f"ε={eps:g}: {error:.1%}" for eps, error in row.items()) + f"\nresults in {job_dir}")
    return metrics["clean_error"]


main = entry_point(train)

if __name__ == "__main__":
    main()
