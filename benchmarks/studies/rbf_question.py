"""A one-off study, not shipped: what drives the RBF's confidence on its FGSM mistakes (paper: 1.2%, clean 60.6%)?
Trains the paper's RBF (Adam, batches of 100, centers at the class means) on the embedded digits and varies one
factor at a time from the CPU experiment's setting (15 epochs, lr .05, β = 1/784, FGSM unclipped, through the
model's own per-class cost). Prints a Markdown table.
    PYTHONPATH=$PWD python benchmarks/studies/rbf_question.py
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.attacks import fgsm_curve, predict
from pipeline.models import RBF
from pipeline.config import compose_job, hydra_context, instantiate

EPS = 0.25


class ThroughCrossEntropy(RBF):
    """A trained RBF's weights attacked through cross-entropy on log p_c (a softmax over its logits) instead of its
    per-class cost; its probabilities stay p_c."""

    def cost(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, y)


def train(x, y, epochs: int, lr: float, init_beta: float | None) -> RBF:
    torch.manual_seed(0)
    model = RBF(x.shape[1:], 10, init_beta=init_beta)
    model.initialize(x, y)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        model.train()
        for index in torch.randperm(len(y)).split(100):
            optimizer.zero_grad()
            model.cost(model(x[index]), y[index]).backward()
            optimizer.step()
    return model.eval()


def measure(model: RBF, x, y, clip) -> tuple[float, ...]:
    confidence, predicted = predict(model, x)
    curve = fgsm_curve(model, x, y, [EPS], clip=clip)
    return (float((predicted != y).float().mean()), float(confidence.mean()),
            float(curve.error[0]), float(curve.confidence_wrong[0]))


def splits():
    """The default data config's train and test splits (the embedded 5,000 digits, 70/10/20)."""
    with hydra_context():
        cfg = compose_job([])
    data = instantiate(cfg.data, "data", seed=cfg.seed)
    data.setup()
    return data.splits["train"], data.splits["test"]


def main() -> None:
    (x, y), (x_test, y_test) = splits()
    base = dict(epochs=15, lr=0.05, init_beta=None)
    variants = [("CPU experiment: 15 epochs, lr .05, β₀ = 1/784, unclipped, own cost", base, None, False),
                ("5 epochs", base | dict(epochs=5), None, False),
                ("50 epochs", base | dict(epochs=50), None, False),
                ("lr .01 (conf default)", base | dict(lr=0.01), None, False),
                ("β₀ = 0.01", base | dict(init_beta=0.01), None, False),
                ("β₀ = 0.1", base | dict(init_beta=0.1), None, False),
                ("β₀ = 1", base | dict(init_beta=1.0), None, False),
                ("FGSM clipped to [0, 1]", base, (0.0, 1.0), False),
                ("FGSM through cross-entropy on log p_c", base, None, True)]
    models: dict[str, RBF] = {}
    print("| variant | clean error | clean confidence | FGSM error (ε=.25) | confidence on FGSM mistakes |")
    print("|---|---|---|---|---|")
    for name, settings, clip, cross_entropy in variants:
        key = str(sorted(settings.items()))
        if key not in models:
            models[key] = train(x, y, **settings)
        model = models[key]
        if cross_entropy:
            attacked = ThroughCrossEntropy(x.shape[1:], 10)
            attacked.load_state_dict(model.state_dict())
            model = attacked.eval()
        row = measure(model, x_test, y_test, clip)
        print(f"| {name} | " + " | ".join(f"{100 * v:.1f}%" for v in row) + " |", flush=True)


if __name__ == "__main__":
    main()
