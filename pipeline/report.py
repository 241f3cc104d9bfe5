"""The sweep report: tables and plots from summary.csv and transfer.csv, as report.md and report.html.

Both files are rendered from one list of blocks (headings, text, tables, images), so they always agree.
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd

from pipeline.paper import PAPER

PLOTS = "plots"


@dataclass
class Document:
    title: str
    blocks: list[tuple[str, object]] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.blocks.append(("heading", text))

    def text(self, text: str) -> None:
        self.blocks.append(("text", text))

    def table(self, frame: pd.DataFrame) -> None:
        self.blocks.append(("table", frame))

    def image(self, path: str, caption: str) -> None:
        self.blocks.append(("image", (path, caption)))

    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for kind, value in self.blocks:
            if kind == "heading":
                out += [f"## {value}", ""]
            elif kind == "text":
                out += [str(value), ""]
            elif kind == "table":
                frame = value.astype(str)
                out += ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
                out += ["| " + " | ".join(row) + " |" for row in frame.itertuples(index=False)] + [""]
            else:
                path, caption = value
                out += [f"![{caption}]({path})", ""]
        return "\n".join(out)

    def html(self) -> str:
        body = [f"<h1>{html.escape(self.title)}</h1>"]
        for kind, value in self.blocks:
            if kind == "heading":
                body.append(f"<h2>{html.escape(str(value))}</h2>")
            elif kind == "text":
                body.append(f"<p>{html.escape(str(value))}</p>")
            elif kind == "table":
                body.append(value.to_html(index=False, escape=True, border=0))
            else:
                path, caption = value
                body.append(f'<figure><img src="{html.escape(path)}" alt="{html.escape(caption)}">'
                            f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
                 "td,th{padding:2px 8px;border-bottom:1px solid #ddd}img{max-width:100%}")
        return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
                f"<style>{style}</style></head><body>{''.join(body)}</body></html>")


def percent(value: float) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}%"


def aggregate(summary: pd.DataFrame, column: str) -> pd.DataFrame:
    """Mean, and a 95% interval half-width where there are several seeds, per setting and ε."""
    grouped = summary.groupby(["setting", "eps"])[column]
    stats = grouped.agg(["mean", "std", "count"]).reset_index()
    stats["half_width"] = 1.96 * stats["std"].fillna(0) / stats["count"].pow(0.5)
    return stats


def plot_curves(summary: pd.DataFrame, column: str, path: Path, ylabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stats = aggregate(summary, column)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, rows in stats.groupby("setting"):
        ax.errorbar(rows["eps"], rows["mean"], yerr=rows["half_width"], marker="o", capsize=3, label=name)
    ax.set(xlabel="ε", ylabel=ylabel, ylim=(0, 1.02))
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_transfer(transfer: pd.DataFrame, eps: float, labels: dict[str, str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cell = transfer[transfer["eps"] == eps].pivot_table(index="source", columns="target", values="error")
    order = sorted(cell.index, key=lambda job: labels.get(job, job))   # same setting order on both axes
    cell = cell.loc[order, order]
    names = [labels.get(j, j) for j in cell.index]
    fig, ax = plt.subplots(figsize=(1.2 + 0.8 * len(names), 1.0 + 0.7 * len(names)))
    image = ax.imshow(cell.values, vmin=0, vmax=1, cmap="magma")
    ax.set_xticks(range(len(cell.columns)), [labels.get(j, j) for j in cell.columns], rotation=45, ha="right",
                  fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    for (i, j), value in pd.DataFrame(cell.values).stack().items():
        ax.text(j, i, f"{100 * value:.0f}", ha="center", va="center", fontsize=7,
                color="white" if value < 0.6 else "black")
    ax.set(xlabel="target (predicts)", ylabel="source (crafts)", title=f"transfer error at ε={eps:g}")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_examples(images: Sequence, titles: Sequence[str], path: Path) -> None:
    """Rows of images (one row per ε), each a [N, C, H, W] tensor in [0, 1]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = len(images), len(images[0])
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.9, rows * 1.0), squeeze=False)
    for r, (batch, title) in enumerate(zip(images, titles)):
        for c in range(cols):
            picture = batch[c].clamp(0, 1).permute(1, 2, 0).squeeze(-1).numpy()
            axes[r][c].imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=1)
            axes[r][c].axis("off")
        axes[r][0].set_title(title, fontsize=7, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def paper_table(summary: pd.DataFrame, eps: float = 0.25) -> pd.DataFrame:
    """Our mean (± 95% interval over seeds) beside each paper number whose setting this sweep ran."""
    rows = []
    for number in PAPER:
        ours = summary[(summary["model"] == number.model) & (summary["regularizer"] == number.regularizer)
                       & ((summary["eps"] - number.eps).abs() < 1e-9)]
        if ours.empty:
            continue
        per_job = ours.groupby("job_id")[number.metric].first()
        half = 1.96 * per_job.std() / math.sqrt(len(per_job)) if len(per_job) > 1 else float("nan")
        rows.append({"claim": number.claim, "ε": number.eps, "paper (MNIST)": percent(number.value),
                     "ours": percent(per_job.mean()) + ("" if math.isnan(half) else f" ± {100 * half:.1f}"),
                     "seeds": len(per_job), "data": ", ".join(sorted(ours["data"].unique()))})
    return pd.DataFrame(rows)


def write_report(sweep_dir: Path, name: str, summary: pd.DataFrame, transfer: pd.DataFrame,
                 failed: dict[str, str], examples: dict[str, tuple[list, list[str]]]) -> Path:
    """Plots under plots/, then report.md and report.html in the sweep directory; returns report.html."""
    plots = sweep_dir / PLOTS
    plots.mkdir(parents=True, exist_ok=True)
    doc = Document(f"Harness sweep '{name}'")
    labels = dict(zip(summary["job_id"], summary["label"])) if not summary.empty else {}
    doc.text(f"{summary['job_id'].nunique() if not summary.empty else 0} complete jobs, {len(failed)} failed. "
             "Errors are test-set error rates under FGSM at each ε; confidence is the mean probability of the "
             "predicted class.")
    if failed:
        doc.heading("Failed jobs")
        doc.table(pd.DataFrame([{"job": job, "reason": reason} for job, reason in failed.items()]))
    if summary.empty:
        return _save(sweep_dir, doc)
    doc.heading("Paper vs this run")
    comparison = paper_table(summary)
    if comparison.empty:
        doc.text("No job of this sweep matches a setting of the paper.")
    else:
        doc.table(comparison)
    doc.heading("FGSM error by ε")
    table = summary.pivot_table(index="setting", columns="eps", values="error").map(percent)
    doc.table(table.rename(columns=lambda e: f"ε={e:g}").reset_index())
    doc.text("Mean over seeds; per-job rows are in summary.csv.")
    for column, ylabel in (("error", "error rate"), ("confidence", "mean confidence")):
        plot_curves(summary, column, plots / f"{column}_vs_eps.png", ylabel)
        doc.image(f"{PLOTS}/{column}_vs_eps.png", f"{ylabel} vs ε (mean over seeds, 95% interval)")
    if not transfer.empty:
        doc.heading("Transfer")
        doc.text("Rows: the model the examples were crafted on; columns: the model that predicts them. Agreement: "
                 "how often the target predicts the source's wrong class, over examples both misclassify.")
        for eps in sorted(transfer["eps"].unique()):
            if eps == 0:
                continue
            plot_transfer(transfer, eps, labels, plots / f"transfer_eps{eps:g}.png")
            doc.image(f"{PLOTS}/transfer_eps{eps:g}.png", f"transfer error at ε={eps:g}")
        top = transfer[transfer["eps"] == transfer["eps"].max()].copy()
        top["source"], top["target"] = top["source"].map(labels), top["target"].map(labels)
        for column in ("error", "agreement_both_wrong", "agreement_source_wrong", "confidence"):
            top[column] = top[column].map(percent)
        doc.table(top[["source", "target", "eps", "error", "agreement_both_wrong", "agreement_source_wrong",
                       "confidence"]])
    if examples:
        doc.heading("Adversarial examples")
        for job, (images, titles) in examples.items():
            plot_examples(images, titles, plots / f"examples_{job}.png")
            doc.image(f"{PLOTS}/examples_{job}.png", f"FGSM examples crafted on {labels.get(job, job)}")
    return _save(sweep_dir, doc)


def _save(sweep_dir: Path, doc: Document) -> Path:
    from pipeline.store import atomic_write

    atomic_write(sweep_dir / "report.md", lambda tmp: tmp.write_text(doc.markdown()))
    atomic_write(sweep_dir / "report.html", lambda tmp: tmp.write_text(doc.html()))
    return sweep_dir / "report.html"
