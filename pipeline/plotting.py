"""Drawing basics shared by the report and the paper's figures: matplotlib without a display, saving a figure,
tensors as images, and images tiled into one picture."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    # Labels are text, never mathtext: a setting's name holding `$...$` (read from a sweep) is drawn as written.
    matplotlib.rcParams["text.parse_math"] = False
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)


def image(tensor: torch.Tensor) -> np.ndarray:
    """[C, H, W] -> [H, W] (one channel) or [H, W, C], as numpy."""
    array = tensor.detach().cpu().double()
    return (array[0] if array.shape[0] == 1 else array.permute(1, 2, 0)).numpy()


def mosaic(images: Sequence[np.ndarray], columns: int, fill: float) -> np.ndarray:
    """Images [H, W] or [H, W, C] tiled `columns` to a row, `fill` pixels between them: one imshow for all of them
    (an axes per image made matplotlib the report's main cost)."""
    h, w, *channels = images[0].shape
    rows = math.ceil(len(images) / columns)
    tiled = np.full((rows * (h + 1) - 1, columns * (w + 1) - 1, *channels), fill, dtype=np.float64)
    for i, picture in enumerate(images):
        r, c = divmod(i, columns)
        tiled[r * (h + 1): r * (h + 1) + h, c * (w + 1): c * (w + 1) + w] = picture
    return tiled
