"""`hydra/launcher=ray`: the jobs of a Hydra multirun as Ray 2.x tasks (see ray_launcher.py)."""
