"""The models of the paper and a few more. Inputs are images with pixels in [0, 1]; outputs are logits.

Every model is a `Classifier`: besides `forward` it names its own training cost (`cost`), how logits become
class probabilities (`probabilities`) and any constraint applied after an optimizer step (`constrain`).
FGSM attacks through `cost`, so each model is attacked through the objective it was trained on.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.errors import ConfigError


class Classifier(nn.Module):
    """Base class: cross-entropy on softmax logits, no constraint."""

    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        if num_classes < 2:
            raise ConfigError(f"num_classes={num_classes}: a classifier needs at least 2 classes")
        self.input_shape, self.num_classes = tuple(input_shape), num_classes
        self.input_size = math.prod(self.input_shape)

    def cost(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training cost J averaged over the batch."""
        return F.cross_entropy(logits, y)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """J(θ, x, y): the cost of this model's own prediction on x."""
        return self.cost(self(x), y)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.softmax(dim=-1)

    @torch.no_grad()
    def constrain(self) -> None:
        """Called after every optimizer step (e.g. max-norm); nothing by default."""

    @torch.no_grad()
    def initialize(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Data-dependent initialization from the training set, before training; nothing by default."""


class Softmax(Classifier):
    """Multinomial logistic regression (the paper's shallow softmax)."""

    affine = True       # logits affine in x: evaluations.csv gets its exact worst case (pipeline/attacks/exact.py)

    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__(input_shape, num_classes)
        self.linear = nn.Linear(self.input_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))

    @property
    def first_layer(self) -> nn.Linear:
        return self.linear


class Logistic(Classifier):
    """Binary logistic regression p(y=1|x) = σ(wᵀx + b), written as two logits [0, wᵀx + b].

    Cross-entropy on these logits is exactly the logistic loss, and ∇ₓJ = ∓σ(∓z)·w, so FGSM moves every pixel
    by ±ε·sign(w) (Fig. 2 of the paper).
    """

    affine = True       # logits affine in x: evaluations.csv gets its exact worst case (pipeline/attacks/exact.py)

    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        if num_classes != 2:
            raise ConfigError(f"model=logistic is binary but the data has {num_classes} classes; "
                              "pick two classes with data.digits=[3,7] or use model=softmax")
        super().__init__(input_shape, num_classes)
        self.linear = nn.Linear(self.input_size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.linear(x.flatten(1))
        return torch.cat([torch.zeros_like(z), z], dim=1)

    @property
    def first_layer(self) -> nn.Linear:
        return self.linear


class MaxoutLinear(nn.Module):
    """A maxout layer: `pieces` affine maps per unit, the unit outputs their maximum."""

    def __init__(self, in_features: int, units: int, pieces: int) -> None:
        super().__init__()
        self.units, self.pieces = units, pieces
        self.linear = nn.Linear(in_features, units * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).view(-1, self.units, self.pieces).amax(dim=-1)


def dense_stack(input_size: int, widths: Sequence[int], num_classes: int, first: list[nn.Module],
                block: Callable[[int, int], list[nn.Module]]) -> nn.Sequential:
    """Flatten, `first`, one `block(in, out)` per hidden width, then a linear layer to the class logits."""
    layers: list[nn.Module] = [nn.Flatten(), *first]
    width = input_size
    for units in widths:
        layers += block(width, units)
        width = units
    return nn.Sequential(*layers, nn.Linear(width, num_classes))


def max_norm_(linear: nn.Linear, max_norm: float) -> None:
    """Rescale the weight vector of each output unit to norm ≤ max_norm (pylearn2's max_col_norm)."""
    norms = linear.weight.norm(dim=1, keepdim=True).clamp(min=1e-12)
    linear.weight.mul_(norms.clamp(max=max_norm) / norms)


class Maxout(Classifier):
    """The paper's maxout network (pylearn2 mnist_pi): maxout layers with dropout, then a softmax layer."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, units: int = 240, pieces: int = 5,
                 layers: int = 2, input_dropout: float = 0.2, hidden_dropout: float = 0.5,
                 max_norm: float | None = 1.9365) -> None:
        super().__init__(input_shape, num_classes)
        for name, p in (("input_dropout", input_dropout), ("hidden_dropout", hidden_dropout)):
            if not 0 <= p < 1:
                raise ConfigError(f"model.{name}={p} must lie in [0, 1)")
        if units < 1 or pieces < 1 or layers < 1:
            raise ConfigError(f"model.units={units}, pieces={pieces}, layers={layers} must all be ≥ 1")
        self.max_norm = max_norm
        self.net = dense_stack(self.input_size, [units] * layers, num_classes, [nn.Dropout(input_dropout)],
                               lambda i, o: [MaxoutLinear(i, o, pieces), nn.Dropout(hidden_dropout)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @property
    def first_layer(self) -> nn.Linear:
        return self.net[2].linear

    @torch.no_grad()
    def constrain(self) -> None:
        if self.max_norm is not None:
            for module in self.net.modules():
                if isinstance(module, nn.Linear):
                    max_norm_(module, self.max_norm)


def log1mexp(a: torch.Tensor) -> torch.Tensor:
    """log(1 − exp(a)) for a < 0, accurate at both ends (Mächler 2012)."""
    a = a.clamp(max=-1e-7)
    return torch.where(a > -math.log(2), torch.log(-torch.expm1(a)), torch.log1p(-torch.exp(a)))


class RBF(Classifier):
    """The shallow RBF network: one unnormalized Gaussian bump per class.

    p_c(x) = exp(−Σᵢ β_ci (x_i − μ_ci)²), β ≥ 0, trained one-vs-rest (binary cross-entropy per class). The logits
    are log p_c; the prediction is argmax_c p_c and the confidence max_c p_c, which is low far from the data. That
    is the paper's form and what makes RBF resist FGSM; a softmax over −distances (`normalized: true`) does not.
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int, normalized: bool = False,
                 init_beta: float | None = None) -> None:
        super().__init__(input_shape, num_classes)
        self.normalized = normalized
        beta = init_beta if init_beta is not None else 1.0 / self.input_size
        self.centers = nn.Parameter(torch.full((num_classes, self.input_size), 0.5)
                                    + 0.01 * torch.randn(num_classes, self.input_size))
        self.log_beta = nn.Parameter(torch.full((num_classes, self.input_size), math.log(beta)))

    @torch.no_grad()
    def initialize(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Centers start at the class means (an RBF network's usual start; random centers train slowly). Computed
        where the centers live, whatever device and dtype the data has, without a host sync per class."""
        x = x.flatten(1).to(self.centers)
        members = F.one_hot(y.to(self.centers.device).long(), self.num_classes).to(x)   # [N, K]
        counts = members.sum(dim=0).unsqueeze(1)
        self.centers.copy_(torch.where(counts > 0, members.T @ x / counts.clamp(min=1), self.centers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squared = (x.flatten(1).unsqueeze(1) - self.centers).pow(2)        # [N, K, D]
        return -(squared * self.log_beta.exp()).sum(dim=-1)                  # log p_c

    def cost(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.normalized:
            return F.cross_entropy(logits, y)
        target = F.one_hot(y, self.num_classes).bool()
        per_class = torch.where(target, -logits, -log1mexp(logits))         # −log p_y, −log(1 − p_c)
        return per_class.sum(dim=1).mean()

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.softmax(dim=-1) if self.normalized else logits.exp()


class MLP(Classifier):
    """A ReLU multilayer perceptron."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, hidden: Sequence[int] = (800, 800),
                 dropout: float = 0.0) -> None:
        super().__init__(input_shape, num_classes)
        self.net = dense_stack(self.input_size, hidden, num_classes, [],
                               lambda i, o: [nn.Linear(i, o), nn.ReLU(), nn.Dropout(dropout)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @property
    def first_layer(self) -> nn.Linear:
        return self.net[1]


class Conv(Classifier):
    """A small convnet (two conv-ReLU-pool blocks, then two dense layers) for MNIST or CIFAR-10.

    Per-channel normalization happens inside the model, so attacks work on [0, 1] pixels.
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int, channels: Sequence[int] = (32, 64),
                 hidden: int = 256, dropout: float = 0.5, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None) -> None:
        super().__init__(input_shape, num_classes)
        in_channels, height, width = self.input_shape
        self.register_buffer("mean", torch.tensor(mean or [0.5] * in_channels).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std or [0.5] * in_channels).view(1, -1, 1, 1))
        blocks: list[nn.Module] = []
        for out_channels in channels:
            blocks += [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            in_channels, height, width = out_channels, height // 2, width // 2
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * height * width, hidden), nn.ReLU(),
                                  nn.Dropout(dropout), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features((x - self.mean) / self.std))

    @property
    def first_layer(self) -> nn.Conv2d:
        return self.features[0]


class Ensemble(Classifier):
    """N independently initialized members; the ensemble's prediction averages their probabilities.

    Each member is trained on its own cost (as independent nets would be); the logits are the log of the averaged
    probabilities, so FGSM on the ensemble attacks the ensemble's own prediction.
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int, member: Any, size: int = 5,
                 build: Callable[..., Classifier] | None = None) -> None:
        super().__init__(input_shape, num_classes)
        if size < 1:
            raise ConfigError(f"model.size={size}: an ensemble needs at least 1 member")
        from hydra.utils import instantiate

        build = build or (lambda: instantiate(member, input_shape=input_shape, num_classes=num_classes))
        self.members = nn.ModuleList(build() for _ in range(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probabilities = torch.stack([m.probabilities(m(x)) for m in self.members]).mean(dim=0)
        return probabilities.clamp(min=1e-30).log()

    def cost(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.nll_loss(logits, y)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.stack([m.loss(x, y) for m in self.members]).mean()

    @torch.no_grad()
    def constrain(self) -> None:
        for member in self.members:
            member.constrain()

    @property
    def first_layer(self) -> nn.Module:
        return self.members[0].first_layer
