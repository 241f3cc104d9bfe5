"""`hydra/launcher=slurm`: Hydra's submitit launcher, with the request checked against the cluster first."""
