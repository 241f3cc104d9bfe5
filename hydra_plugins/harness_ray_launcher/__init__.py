"""A Hydra launcher plugin: the jobs of a multirun as Ray 2.x tasks (ray_launcher.py). Any Hydra app names it
`hydra/launcher=harness_ray` (config.py registers it); Harness's apps also as `hydra/launcher=ray`."""
