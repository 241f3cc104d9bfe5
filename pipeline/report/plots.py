"""The report's plots: error and confidence curves over ε, transfer heatmaps and strips of adversarial examples
(drawn with pipeline.plotting's basics)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from pipeline.plotting import image, mosaic, pyplot, save
from pipeline.stats import estimate

PLOTS = "plots"       # the report's plot folder, beside report.md
WRONG = "#cf222e"     # the report's FAIL red: a prediction that is not the true class


def aggregate(summary: pd.DataFrame, column: str) -> pd.DataFrame:
    """Mean and 95% interval half-width (Student's t; 0 with one seed) per setting and ε."""
    rows = []
    for (setting, eps), values in summary.groupby(["setting", "eps"])[column]:
        found = estimate(values)
        if found is not None:
            rows.append({"setting": setting, "eps": eps, "mean": found.mean,
                         "half_width": 0.0 if math.isnan(found.half) else found.half})
    return pd.DataFrame(rows, columns=["setting", "eps", "mean", "half_width"])


def plot_curves(summary: pd.DataFrame, column: str, path: Path, ylabel: str) -> None:
    plt = pyplot()
    stats = aggregate(summary, column)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, rows in stats.groupby("setting"):
        ax.errorbar(rows["eps"], rows["mean"], yerr=rows["half_width"], marker="o", capsize=3, label=name)
    ax.set(xlabel="ε", ylabel=ylabel, ylim=(0, 1.02))
    ax.legend(fontsize=6)
    ax.grid(alpha=0.3)
    save(fig, path)


def plot_transfer(table: pd.DataFrame, eps: float, path: Path, value: str = "error") -> None:
    """A heatmap of one measure per (source setting, target setting) at ε; cells carry their percentage while they
    are large enough to read it (up to 16 settings), and the figure grows with the settings (30 stay legible)."""
    plt = pyplot()
    cell = table[table["eps"] == eps].pivot_table(index="source", columns="target", values=value)
    order = sorted(set(cell.index) | set(cell.columns))   # same setting order on both axes
    cell = cell.reindex(index=order, columns=order)
    size = 0.6 if len(order) <= 16 else 0.32
    fig, ax = plt.subplots(figsize=(2.5 + size * len(order), 2.0 + size * 0.85 * len(order)))
    picture = ax.imshow(cell.values, vmin=0, vmax=1, cmap="magma")
    labels = 7 if len(order) <= 16 else 5
    ax.set_xticks(range(len(order)), order, rotation=45, ha="right", fontsize=labels)
    ax.set_yticks(range(len(order)), order, fontsize=labels)
    for (i, j), number in pd.DataFrame(cell.values).stack().items() if len(order) <= 16 else ():
        ax.text(j, i, f"{100 * number:.0f}", ha="center", va="center", fontsize=6,
                color="white" if number < 0.6 else "black")
    ax.set(xlabel="target (predicts)", ylabel="source (crafts)",
           title=f"transfer {value.replace('_', ' ')} at ε={eps:g}")
    fig.colorbar(picture, ax=ax, fraction=0.046)
    save(fig, path)


@dataclass
class Examples:
    """A model's examples: the same test images at each ε (one [N, C, H, W] tensor in [0, 1] per row, titled), their
    true classes [N] and the model's predicted classes on each row."""
    titles: Sequence[str]
    images: Sequence
    labels: Sequence[int]
    predictions: Sequence


def plot_examples(examples: Examples, path: Path) -> None:
    save(examples_figure(examples), path)


def examples_figure(examples: Examples):
    """One strip per ε; under each image "true → predicted", in red and framed where the prediction is wrong."""
    from matplotlib.patches import Rectangle

    plt = pyplot()
    rows, cols = len(examples.images), len(examples.labels)
    fig, axes = plt.subplots(rows, 1, figsize=(cols * 0.9, rows * 1.25), squeeze=False)
    for ax, batch, predicted, title in zip(axes[:, 0], examples.images, examples.predictions, examples.titles):
        pictures = [image(x) for x in batch[:cols].clamp(0, 1)]
        height, width = pictures[0].shape[:2]
        ax.imshow(mosaic(pictures, cols, fill=1.0), cmap="gray" if pictures[0].ndim == 2 else None, vmin=0, vmax=1)
        wrong = [int(guess) != int(label) for label, guess in zip(examples.labels, predicted)]
        for c, (label, guess, fooled) in enumerate(zip(examples.labels, predicted, wrong)):
            left = c * (width + 1)        # the mosaic puts one pixel between images
            ax.text(left + width / 2, height + 0.5, f"{int(label)} → {int(guess)}", ha="center", va="top",
                    fontsize=6, color=WRONG if fooled else "black")
            if fooled:
                ax.add_patch(Rectangle((left - 0.5, -0.5), width, height, fill=False, edgecolor=WRONG, linewidth=1.5))
        ax.set_ylim(height * 1.4, -0.5)   # room under the images for their labels
        ax.set_title(f"{title}: {sum(wrong)} of {cols} wrong", fontsize=7, loc="left")
        ax.axis("off")
    return fig
