"""The paper's figures, recomputed from a sweep's models: the data of each (plain arrays, for tests and for other
plots) and a PNG of it.

    Fig. 2   logistic regression on 3s vs 7s: weights, their sign, clean and FGSM examples
    Fig. 3   first-layer weights of the naive and the adversarially trained maxout network
    Fig. 4   the logits of one test digit as ε runs along the FGSM direction (piecewise linear), with the images
    rubbish  Appendix A: the share of N(0, I) inputs each model gives more than 0.5 probability
    ensemble attacking a maxout ensemble as a whole vs through one member
    L1 sweep training and FGSM error against the L1 coefficient: where training breaks
Each figure uses the first seed of its setting; one that the sweep did not run is left out.
"""
from __future__ import annotations

import copy
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch

from pipeline import store
from pipeline.models import adapter
from pipeline.attacks import fgsm, input_gradient, predict
from pipeline.data import test_set
from pipeline.paper import claims
from pipeline.paper.quantities import Attacked, Evaluated
from pipeline.paper.results import Results, Setting, lookup
from pipeline.paper.verdicts import Quantity
from pipeline.plotting import image, mosaic, pyplot, save


def error_rate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((predict(model, x)[1] != y).float().mean())


# --- Fig. 2 -----------------------------------------------------------------------------------------------------

@dataclass
class LogisticFigure:
    weights: np.ndarray         # [H, W]
    clean: list[np.ndarray]     # a few test digits
    adversarial: list[np.ndarray]
    clean_error: float          # on the whole test set
    adversarial_error: float
    eps: float


def logistic_figure(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                    clip: tuple[float, float] | None, count: int = 8) -> LogisticFigure:
    """FGSM on binary logistic regression moves every pixel by ±ε·sign(w): the adversarial images show sign(w)."""
    adversarial = fgsm(model, x, y, eps, clip)
    weights = adapter.first_layer(model).weight.detach().reshape(x.shape[1:])
    return LogisticFigure(image(weights), [image(t) for t in x[:count]], [image(t) for t in adversarial[:count]],
                          error_rate(model, x, y), error_rate(model, adversarial, y), eps)


def plot_logistic(figure: LogisticFigure, path: Path) -> None:
    plt = pyplot()
    count = len(figure.clean)
    fig, axes = plt.subplots(3, max(count, 2), figsize=(max(count, 2) * 1.0, 3.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    bound = float(np.abs(figure.weights).max()) or 1.0
    axes[0][0].imshow(figure.weights, cmap="gray", vmin=-bound, vmax=bound)
    axes[0][0].set_title("w", fontsize=7)
    axes[0][1].imshow(np.sign(figure.weights), cmap="gray", vmin=-1, vmax=1)
    axes[0][1].set_title("sign(w)", fontsize=7)
    for c, (clean, adversarial) in enumerate(zip(figure.clean, figure.adversarial)):
        axes[1][c].imshow(clean, cmap="gray", vmin=0, vmax=1)
        axes[2][c].imshow(adversarial, cmap="gray", vmin=adversarial.min(), vmax=adversarial.max())
    axes[1][0].set_title(f"clean: {100 * figure.clean_error:.1f}% error", fontsize=7, loc="left")
    axes[2][0].set_title(f"FGSM ε={figure.eps:g}: {100 * figure.adversarial_error:.1f}% error", fontsize=7, loc="left")
    save(fig, path)


# --- Fig. 3 -----------------------------------------------------------------------------------------------------

def first_layer_filters(model: torch.nn.Module, count: int) -> np.ndarray:
    """The first `count` weight vectors of the first layer, as images [count, H, W] (one channel)."""
    weights = adapter.first_layer(model).weight.detach().cpu().double()
    return weights[:count].reshape(-1, *model.input_shape)[:, 0].numpy()


def without_first_layer(figure: str, models: Mapping[str, torch.nn.Module]) -> bool:
    """True, and a line saying that `figure` is skipped, when one of the models names no first layer."""
    missing = [name for name, model in models.items() if adapter.first_layer(model) is None]
    if missing:
        print(f"[report] {figure} skipped: {', '.join(missing)} has no first layer (a `first_layer` attribute)",
              file=sys.stderr)
    return bool(missing)


def plot_filters(panels: Mapping[str, np.ndarray], path: Path) -> None:
    """One panel per model: its filters tiled 12 to a row, each scaled to its own largest |weight| (gray is 0)."""
    plt = pyplot()
    columns = 12
    rows_per_panel = max(math.ceil(len(f) / columns) for f in panels.values())
    fig, axes = plt.subplots(len(panels), 1, squeeze=False, figsize=(columns * 0.8, rows_per_panel * len(panels) * 0.9))
    for ax, (title, filters) in zip(axes[:, 0], panels.items()):
        bounds = np.abs(filters).max(axis=(1, 2), keepdims=True)
        ax.imshow(mosaic(filters / np.where(bounds > 0, bounds, 1.0), columns, fill=np.nan), cmap="gray",
                  vmin=-1, vmax=1)   # NaN (between filters) is drawn blank
        ax.set_title(title, fontsize=7, loc="left")
        ax.axis("off")
    save(fig, path)


# --- Fig. 4 -----------------------------------------------------------------------------------------------------

@dataclass
class LogitFigure:
    epsilons: np.ndarray        # [P]
    logits: np.ndarray          # [P, classes]
    label: int
    strip_epsilons: list[float]
    strip: list[np.ndarray]     # the input at each of strip_epsilons


def logits_along_fgsm(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, limit: float, points: int = 401,
                      strip: int = 9) -> LogitFigure:
    """Logits of x + ε·sign(∇ₓJ(x, y)) for ε in [−limit, limit] (unclipped), computed in float64 so that a linear
    stretch has second differences of zero up to rounding."""
    direction = input_gradient(model, x[None], y[None])[0].sign().double()
    exact = copy.deepcopy(model).double().eval()
    epsilons = torch.linspace(-limit, limit, points, dtype=torch.float64)
    inputs = x[None].double() + epsilons.view(-1, *[1] * x.ndim) * direction
    with torch.no_grad():
        logits = exact(inputs).numpy()
    strip_epsilons = np.linspace(-limit, limit, strip).tolist()
    images = [image(x.double() + e * direction[0]) for e in strip_epsilons]
    return LogitFigure(epsilons.numpy(), logits, int(y), strip_epsilons, images)


def kinks(logits: np.ndarray, tolerance: float = 1e-7) -> int:
    """Grid points where some logit bends: second differences above `tolerance` × the logits' scale."""
    second = np.abs(np.diff(logits, n=2, axis=0))
    scale = max(float(np.abs(logits).max()), 1.0)
    return int((second > tolerance * scale).any(axis=1).sum())


def plot_logits(figure: LogitFigure, path: Path, title: str) -> None:
    plt = pyplot()
    strip = len(figure.strip)
    fig = plt.figure(figsize=(max(6.0, strip * 0.75), 4.6))
    grid = fig.add_gridspec(2, strip, height_ratios=[4, 1])
    ax = fig.add_subplot(grid[0, :])
    for c in range(figure.logits.shape[1]):
        ax.plot(figure.epsilons, figure.logits[:, c], lw=2.2 if c == figure.label else 1.0, label=str(c))
    ax.set(xlabel="ε", ylabel="logit", title=f"{title}: true class {figure.label}, "
                                              f"{kinks(figure.logits)} kinks on {len(figure.epsilons)} points")
    ax.legend(fontsize=6, ncol=5)
    ax.grid(alpha=0.3)
    for i, (eps, picture) in enumerate(zip(figure.strip_epsilons, figure.strip)):
        cell = fig.add_subplot(grid[1, i])
        cell.imshow(picture.clip(0, 1), cmap="gray", vmin=0, vmax=1)
        cell.set_title(f"{eps:+.2g}", fontsize=6)
        cell.axis("off")
    save(fig, path)


# --- bars over settings: rubbish inputs, the ensemble, the L1 sweep ------------------------------------------------

def bars(results: Results, data: str, quantities: Mapping[str, Quantity]) -> pd.DataFrame:
    """Mean and 95% half-width of each quantity that the sweep measured on `data`."""
    rows = []
    for name, quantity in quantities.items():
        found = quantity.estimate(results, data)
        if found is not None:
            rows.append({"name": name, "mean": found.mean, "half": 0.0 if math.isnan(found.half) else found.half,
                         "n": found.n})
    return pd.DataFrame(rows, columns=["name", "mean", "half", "n"])


def plot_bars(table: pd.DataFrame, path: Path, ylabel: str, title: str) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(1.5 + 1.1 * len(table), 3.4))
    ax.bar(table["name"], table["mean"], yerr=table["half"], capsize=4, color="#4c72b0")
    ax.set(ylim=(0, 1.05), ylabel=ylabel, title=title)
    ax.tick_params(axis="x", labelsize=7, rotation=20)
    ax.grid(alpha=0.3, axis="y")
    save(fig, path)


def rubbish_table(results: Results, data: str) -> pd.DataFrame:
    models = {"maxout": claims.MAXOUT, "softmax": claims.SOFTMAX, "RBF": claims.RBF,
              "adv. maxout": claims.MAXOUT_ADVERSARIAL}
    fooled = bars(results, data, {n: claims.rubbish_share(s) for n, s in models.items()})
    confidence = bars(results, data, {n: claims.rubbish_share(s, "confidence") for n, s in models.items()})
    return fooled.merge(confidence[["name", "mean"]].rename(columns={"mean": "confidence"}), on="name")


def ensemble_table(results: Results, data: str) -> pd.DataFrame:
    return bars(results, data, {"one maxout": claims.error(claims.MAXOUT),
                                "attack the ensemble": claims.error(claims.ENSEMBLE),
                                "attack one member": Evaluated(claims.ENSEMBLE, "one_member")})   # ε=.25, own clip


def l1_table(results: Results, data: str) -> pd.DataFrame:
    """Per L1 coefficient that the sweep ran (maxout, first layer): training, clean and FGSM error."""
    coefficients = sorted({float(lookup(c, "regularizer.coefficient")) for c in results.jobs["config"]
                           if (c.get("choices") or {}).get("regularizer") == "l1"
                           and (c.get("choices") or {}).get("model") == "maxout"})
    rows = []
    for coefficient in coefficients:
        setting = claims.maxout_l1(coefficient)
        for metric in ("train_error", "clean_error", "error"):
            found = Attacked(setting, metric).estimate(results, data)
            if found is not None:
                rows.append({"coefficient": coefficient, "metric": metric, "mean": found.mean,
                             "half": 0.0 if math.isnan(found.half) else found.half})
    return pd.DataFrame(rows, columns=["coefficient", "metric", "mean", "half"])


def plot_l1(table: pd.DataFrame, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    names = {"train_error": "training error", "clean_error": "clean test error", "error": "FGSM error (ε=.25)"}
    for metric, rows in table.groupby("metric"):
        ax.errorbar(rows["coefficient"], rows["mean"], yerr=rows["half"], marker="o", capsize=3, label=names[metric])
    ax.axhline(0.05, color="gray", ls="--", lw=1, label="5% (the paper's bound)")
    ax.set(xscale="log", xlabel="L1 coefficient (first layer)", ylabel="error rate", ylim=(0, 1.02),
           title="maxout with L1 weight decay")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    save(fig, path)


# --- all figures of a sweep -------------------------------------------------------------------------------------

@dataclass
class Drawn:
    file: str                   # under the plots folder
    caption: str


def first_job(results: Results, setting: Setting) -> tuple[str, str] | None:
    """(data set, job id) of the lowest seed of `setting`, on the first data set that has it."""
    for data in results.datasets:
        ids = results.job_ids(setting, data)
        if ids:
            seeds = dict(zip(results.jobs["job_id"], results.jobs["seed"]))
            return data, min(ids, key=lambda job: seeds[job])
    return None


def loaded(job_dirs: Mapping[str, Path], job: str) -> tuple[torch.nn.Module, Any, Any, Any]:
    config = store.read_config(job_dirs[job])   # as the job saved it, checked as data (pipeline.trust)
    x, y = test_set(config, job_dirs[job] / store.CONFIG)
    clip = config["attack"].get("clip")
    return store.load_model(job_dirs[job]), x, y, tuple(clip) if clip else None


def draw_figures(results: Results, job_dirs: Mapping[str, Path], plots: Path, logit_range: float = 1.0,
                 filters: int = 24, eps: float = 0.25) -> list[Drawn]:
    """Every figure whose settings the sweep ran, as PNGs under `plots`."""
    drawn: list[Drawn] = []
    if found := first_job(results, claims.LOGISTIC_3V7):
        model, x, y, clip = loaded(job_dirs, found[1])
    if found and not without_first_layer("Fig. 2", {"logistic regression": model}):
        plot_logistic(logistic_figure(model, x, y, eps, clip), plots / "fig2_logistic.png")
        drawn.append(Drawn("fig2_logistic.png", "Fig. 2: logistic regression on 3s vs 7s: weights w, sign(w), "
                                                "clean test digits, their FGSM versions"))
    naive, adversarial = first_job(results, claims.MAXOUT), first_job(results, claims.MAXOUT_ADVERSARIAL)
    models = {}
    if naive and adversarial:
        models = {"naive maxout": store.load_model(job_dirs[naive[1]]),
                  "adversarially trained maxout": store.load_model(job_dirs[adversarial[1]])}
    if models and not without_first_layer("Fig. 3", models):
        panels = {name: first_layer_filters(model, filters) for name, model in models.items()}
        plot_filters(panels, plots / "fig3_filters.png")
        drawn.append(Drawn("fig3_filters.png", "Fig. 3: first-layer weights of the naive and the adversarially "
                                               "trained maxout network"))
    for setting in (claims.MAXOUT, claims.SOFTMAX):
        if found := first_job(results, setting):
            model, x, y, _ = loaded(job_dirs, found[1])
            name = setting.name.replace(" ", "_")
            plot_logits(logits_along_fgsm(model, x[0], y[0], logit_range), plots / f"fig4_logits_{name}.png",
                        setting.name)
            drawn.append(Drawn(f"fig4_logits_{name}.png", f"Fig. 4: {setting.name}'s logits for one test digit as "
                                                          "ε runs along the FGSM direction (unclipped)"))
    for data in results.datasets:
        for name, table, ylabel, title in (
                ("rubbish", rubbish_table(results, data), "share",
                 "Appendix A: N(0, I) inputs given > 0.5 probability"),
                ("ensemble", ensemble_table(results, data), "error rate", "Maxout ensemble: FGSM error at ε=.25")):
            if len(table) > 1:
                plot_bars(table, plots / f"{name}_{data}.png", ylabel, f"{title} ({data})")
                drawn.append(Drawn(f"{name}_{data}.png", f"{title} ({data})"))
        table = l1_table(results, data)
        if table["coefficient"].nunique() > 1:
            plot_l1(table, plots / f"l1_sweep_{data}.png")
            drawn.append(Drawn(f"l1_sweep_{data}.png", f"L1 on maxout's first layer: where training breaks ({data})"))
    return drawn

