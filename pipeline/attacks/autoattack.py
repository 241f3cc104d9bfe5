"""AutoAttack (Croce & Hein 2020) through the reference code, `pyautoattack` (fra31/auto-attack), not a port:
APGD-CE → APGD-T (targeted DLR, 9 targets) → FAB-T → Square (5,000 queries, no gradients) in `standard`; `plus`
and `rand` as the reference defines them. Each component runs on the examples the ones before it left standing,
as in the reference's own loop, so one call says which component fooled which example.

The reference always clamps to [0, 1], so it takes only the clipped attack. Its own warnings (its `checks.py`) are
silenced: pipeline/evaluation/diagnostics.py measures the same things and writes them down.
"""
from __future__ import annotations

import logging
import time
from typing import Sequence

import torch
from torch import nn

from pipeline.attacks.base import Attack, Clip, Draws, attack_mode, check_eps, predict
from pipeline.errors import ConfigError

VERSIONS = ("standard", "plus", "rand")
UNIT_BOX = (0.0, 1.0)
COMPONENTS = {"standard": ("apgd-ce", "apgd-t", "fab-t", "square"),      # the reference's attacks_to_run
              "plus": ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"),
              "rand": ("apgd-ce", "apgd-dlr")}
TARGETED = ("apgd-t", "apgd-dlr")     # the DLR losses read the 3rd (targeted: 4th) largest logit


def reference(model: nn.Module, eps: float, version: str, seed: int, classes: int, device: torch.device,
              components: Sequence[str] | None = None):
    """pyautoattack's AutoAttack, quiet, with at most classes − 1 targets (the reference assumes 10 classes);
    `components`: only these of the version's attacks (None: all)."""
    from pyautoattack import AutoAttack

    logging.getLogger("auto-attack").setLevel(logging.ERROR)
    runner = AutoAttack(model, eps=eps, norm="Linf", version=version, seed=seed, device=device)
    runner.verbose = False
    runner.apgd_targeted.n_target_classes = runner.fab.n_target_classes = min(9, classes - 1)
    if classes < 4:
        runner.attacks_to_run = [a for a in runner.attacks_to_run if a not in TARGETED]
    if components is not None:
        runner.attacks_to_run = [a for a in runner.attacks_to_run if a in components]
    return runner


def autoattack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, version: str = "standard",
               seed: int = 0, batch_size: int = 1000, components: Sequence[str] | None = None
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, float]]:
    """AutoAttack on x in the clipped L∞ ball of radius ε (`components`: only these of its attacks). Returns the
    adversarial points and, per component in AutoAttack's order, the examples it fooled that the components before
    it did not (examples the model already gets wrong are in none) and the seconds it took."""
    eps = check_eps(eps)
    x = x.detach()
    with attack_mode(model):
        standing = predict(model, x)[1] == y
        runner = reference(model, eps, version, seed, int(model(x[:1]).shape[1]), x.device,
                           components)
        adv, fooled_by, seconds = x.clone(), {}, {}
        for component in list(runner.attacks_to_run):
            index, started = standing.nonzero().squeeze(1), time.perf_counter()
            fooled_by[component], seconds[component] = torch.zeros_like(standing), 0.0
            if eps == 0 or len(index) == 0:
                continue
            runner.attacks_to_run = [component]
            found, _ = runner.run_standard_evaluation(x[index], y[index], batch_size=batch_size)
            hit = predict(model, found)[1] != y[index]
            adv[index[hit]], fooled_by[component][index[hit]] = found[hit], True
            standing[index[hit]] = False
            seconds[component] = time.perf_counter() - started
    return adv, fooled_by, seconds


class AutoAttack(Attack):
    """The evaluation attack `evaluation.attacks.autoattack`: AutoAttack, clipped to [0, 1] only. `limit`: at most
    this many examples attacked per ε by `after` (the first ones standing; None: all). `components`: only these of
    the version's attacks (None: all of them, the reference's evaluation)."""

    name = "autoattack"

    def __init__(self, version: str = "standard", clip: Sequence[float] | None = UNIT_BOX, seed: int = 0,
                 limit: int | None = None, components: Sequence[str] | None = None) -> None:
        super().__init__(clip, "true", seed)
        if version not in VERSIONS:
            raise ConfigError(f"autoattack version={version!r}; use one of {', '.join(VERSIONS)}")
        if components is not None:
            known = COMPONENTS[version]
            unknown = [c for c in components if c not in known]
            if unknown or not components:
                raise ConfigError(f"autoattack components={list(components)}: {version} has {', '.join(known)}")
            components = list(components)
        if limit is not None and limit < 0:
            raise ConfigError(f"autoattack limit={limit} must be ≥ 0 (or null: no limit)")
        self.version, self.limit, self.components = version, limit, components

    def accepts(self, clip: Clip) -> bool:
        return clip == UNIT_BOX

    def after(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, standing: torch.Tensor
              ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """AutoAttack on the examples other attacks left `standing` (at most `limit`): per component, in
        AutoAttack's order, the examples of x it fooled that the components before it did not, and its seconds."""
        index = standing.nonzero().squeeze(1)[:self.limit]
        _, fooled, seconds = self.run(model, x[index], y[index], eps)
        whole = {component: torch.zeros_like(standing) for component in fooled}
        for component, mask in fooled.items():
            whole[component][index[mask]] = True
        return whole, seconds

    def unattacked(self, standing: torch.Tensor) -> int:
        """How many of the examples `standing` `after` leaves out (beyond `limit`)."""
        return max(0, int(standing.sum()) - self.limit) if self.limit is not None else 0

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float
            ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, float]]:
        """The adversarial points and, per component, the examples it fooled that the ones before it did not and
        its seconds. The reference reseeds torch's global generator: with a seed of its own per (stream, version,
        components, ε, clipping), inside `fork_rng` so the caller's draws are left as they were."""
        if not self.accepts(self.clip):
            raise ConfigError(f"autoattack clip={self.clip}: the reference code clamps to [0, 1]; use clip [0.0, 1.0]")
        seed = self.seed_for(eps, self.version, self.components)
        with torch.random.fork_rng(devices=[x.device] if x.is_cuda else []):
            return autoattack(model, x, y, eps, self.version, seed, components=self.components)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, eps: float,
                draws: Draws | None = None) -> torch.Tensor:   # its draws: `run`'s seed
        return self.run(model, x, y if y is not None else predict(model, x)[1], eps)[0]
