"""Each example's smallest fooling L∞ perturbation, hence the error at every ε from one run: FAB (Croce & Hein
2020, "Minimally distorted adversarial examples with a fast adaptive boundary attack") through the reference code,
pyautoattack's `FABAttack_PT`, untargeted and without a bound (foolbox's FMN would do the same job; foolbox is not
a dependency, pyautoattack already is).

The library is not trusted blindly: each point it returns is scored by the model here, and an example's ε is the
L∞ distance measured here (inf where no point it returned fools the model). Examples the model already gets wrong
have ε = 0. Pixels stay in [0, 1] (FAB clamps to them), so the curve is the clipped attack's.
"""
from __future__ import annotations

import logging
from typing import Sequence

import torch
from torch import nn

from pipeline.attacks.base import Attack, Clip, Curve, Draws, attack_mode, check_epsilons, predict, stream_seed
from pipeline.attacks.pgd import check_iterations

UNIT_BOX = (0.0, 1.0)


def fab(model: nn.Module, steps: int, device: torch.device):
    """pyautoattack's FAB, untargeted on the L∞ norm, quiet."""
    from pyautoattack.fab_pt import FABAttack_PT

    logging.getLogger("auto-attack").setLevel(logging.ERROR)
    return FABAttack_PT(model, norm="Linf", n_iter=steps, device=device)


def smallest(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 100, restarts: int = 1,
             seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per example the closest point found that the model misclassifies and its L∞ distance to x (inf where none
    was found; 0 where x itself is misclassified). Runs after the first start at a random point (FAB's own
    draws, from torch's global generator: seeded with `seed` inside `fork_rng`, so the caller's draws stay)."""
    x = x.detach()
    with attack_mode(model), torch.random.fork_rng(devices=[x.device] if x.is_cuda else []):
        torch.manual_seed(seed)
        wrong = predict(model, x)[1] != y
        best, norms = x.clone(), torch.where(wrong, 0.0, torch.inf).to(x.dtype)
        index = (~wrong).nonzero().squeeze(1)
        if len(index):
            attack = fab(model, steps, x.device)
            for restart in range(restarts):
                found = attack.attack_single_run(x[index], y[index], use_rand_start=restart > 0).clamp(*UNIT_BOX)
                fooled = predict(model, found)[1] != y[index]     # checked here: never the library's word alone
                distance = torch.where(fooled, (found - x[index]).flatten(1).abs().amax(dim=1), torch.inf)
                closer = distance < norms[index]
                best[index[closer]], norms[index[closer]] = found[closer], distance[closer]
    return best, norms


class MinimumNorm(Attack):
    """The evaluation's `minimum_norm` (`evaluation.minimum_norm`): FAB's smallest fooling ε per example, clipped
    to [0, 1] only. `steps`: FAB's iterations per run (each costs one forward and one backward per class);
    `restarts`: runs, the first from x, the others from random points
    (FAB's `n_restarts`). Its random draws are seeded by (seed, job, attack,
    clipping): one run serves every ε."""

    name = "minimum_norm"

    def __init__(self, steps: int = 100, restarts: int = 1, clip: Sequence[float] | None = UNIT_BOX,
                 seed: int = 0) -> None:
        super().__init__(clip, "true", seed)
        check_iterations(steps, restarts)
        self.steps, self.restarts = steps, restarts

    def accepts(self, clip: Clip) -> bool:
        return clip == UNIT_BOX

    def norms(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """The closest fooling points and their L∞ distances, batch by batch; one stream for the whole set."""
        seed = stream_seed(self.seed, *self.stream, self.clip)
        size = batch_size or len(x)
        parts = [smallest(model, x[i: i + size], y[i: i + size], self.steps, self.restarts, seed + i)
                 for i in range(0, len(x), size)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def curve(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilons: Sequence[float],
              batch_size: int | None = None) -> Curve:
        """At each ε the closest fooling point where its distance is at most ε, else x: the error never falls as ε
        grows."""
        return self.curve_from(model, x, y, epsilons, *self.norms(model, x, y, batch_size))

    @staticmethod
    def curve_from(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilons: Sequence[float],
                   adv: torch.Tensor, norms: torch.Tensor) -> Curve:
        epsilons = check_epsilons(epsilons)
        clean, attacked = predict(model, x), predict(model, adv)
        within = norms[None] <= torch.tensor(epsilons, dtype=norms.dtype, device=norms.device)[:, None]
        predictions = torch.where(within, attacked[1][None], clean[1][None])
        confidences = torch.where(within, attacked[0][None], clean[0][None])
        return Curve(epsilons, predictions, confidences, y)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, eps: float,
                draws: Draws | None = None) -> torch.Tensor:   # its draws: `norms`' seed
        labels = y if y is not None else predict(model, x)[1]
        adv, norms = self.norms(model, x, labels)
        return torch.where((norms <= eps).view(-1, *[1] * (x.ndim - 1)), adv, x)
