"""The report's lead section, *Models side by side*: one row per setting of the sweep's own (clean error, the
strongest attack's error at every ε with FGSM beside it, the ε fooling half the test set, transfer in and out,
flags), the minimum-norm curve, and the model files a zoo evaluated."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import pandas as pd

from pipeline.clipping import clip_name
from pipeline.paper.results import Results, lookup
from pipeline.report.document import Document
from pipeline.report.plots import PLOTS, plot_curves
from pipeline.report.settings import (CHANCE, NOT_LEARNED, eps_interval, flagged_checks, interval, job_settings,
                                      mark_not_learned)
from pipeline.stats import percent


def own_clip_strongest(results: Results) -> pd.DataFrame:
    """evaluations.csv's `strongest` rows at each job's own clipping (that of its FGSM curve in summary.csv, so that
    the two sit side by side); clipped to [0, 1] for a job whose config the results lack."""
    evaluations = results.evaluations
    if evaluations.empty:
        return pd.DataFrame(columns=["job_id", "eps", "error"])
    own = {job: clip_name(lookup(config, "attack.clip")) for job, config in zip(results.jobs["job_id"],
                                                                                  results.jobs["config"])}
    rows = evaluations[evaluations["evaluation"] == "strongest"]
    return rows[rows["clip"] == rows["job_id"].map(own).fillna("0-1")]


def robustness_curves(results: Results) -> pd.DataFrame:
    """Per job, setting and ε > 0: the error under the strongest attack and under FGSM (the job's own curve)."""
    settings = job_settings(results.summary)
    strongest = own_clip_strongest(results)[["job_id", "eps", "error"]].assign(attack="strongest")
    fgsm = results.summary[["job_id", "eps", "error"]].assign(attack="FGSM")
    curves = pd.concat([strongest, fgsm], ignore_index=True)
    curves = curves[curves["eps"] > 0]
    return curves.assign(setting=settings.reindex(curves["job_id"]).to_numpy())


def eps_fooling_half(eps: Sequence[float], error: Sequence[float]) -> float:
    """The smallest ε at which the error reaches 50%, linear between the evaluated ε (sorted, the first 0 with the
    clean error); inf when no evaluated ε reaches it."""
    for i, (e, value) in enumerate(zip(eps, error)):
        if value >= 0.5:
            return e if i == 0 else eps[i - 1] + (0.5 - error[i - 1]) * (e - eps[i - 1]) / (value - error[i - 1])
    return math.inf


def fooling_half(curves: pd.DataFrame, summary: pd.DataFrame) -> pd.Series:
    """setting -> the ε that fools half its test set (on each job's highest error at each ε: the strongest attack's
    where the evaluation ran, else FGSM's), mean ± interval over seeds; "> ε" when some seed holds beyond the
    largest ε evaluated."""
    clean = summary.drop_duplicates("job_id").assign(eps=0.0, error=lambda rows: rows["clean_error"])
    points = pd.concat([clean[["job_id", "setting", "eps", "error"]], curves], ignore_index=True)
    highest = points.groupby(["setting", "job_id", "eps"])["error"].max().reset_index()
    per_job = highest.groupby(["setting", "job_id"]).apply(
        lambda rows: eps_fooling_half(rows["eps"].tolist(), rows["error"].tolist()), include_groups=False)

    return per_job.groupby(level="setting").agg(lambda values: eps_interval(values, f"> {curves['eps'].max():g}"))


def transfer_in_out(transfer: pd.DataFrame) -> pd.DataFrame:
    """setting -> the mean error that the other settings' examples cause on it (in) and its examples cause on the
    others (out), at the largest transfer ε."""
    top = transfer[(transfer["eps"] == transfer["eps"].max()) & (transfer["source"] != transfer["target"])]
    return pd.DataFrame({"transfer in": top.groupby("target")["error"].mean().map(percent),
                         "transfer out": top.groupby("source")["error"].mean().map(percent)})


def models_table(results: Results) -> pd.DataFrame:
    """One row per setting: seeds, clean error and confidence, the strongest attack's and FGSM's error at each ε, the
    ε that fools half the test set, transfer in and out, the diagnostics flagged; mean ± 95% interval over seeds."""
    summary = results.summary
    settings = job_settings(summary)
    jobs = summary.drop_duplicates("job_id").groupby("setting")
    table = pd.DataFrame({"seeds": jobs["job_id"].nunique(), "clean error": jobs["clean_error"].agg(interval),
                          "clean confidence": jobs["clean_confidence"].agg(interval)})
    curves = robustness_curves(results)
    columns = curves.groupby(["eps", "attack"], sort=False)
    for eps, attack in sorted(columns.groups, key=lambda key: (key[0], key[1] != "strongest")):
        table[f"ε={eps:g} {attack}"] = columns.get_group((eps, attack)).groupby("setting")["error"].agg(interval)
    if len(curves):
        table["ε fooling half"] = fooling_half(curves, summary)
    if not results.transfer_settings.empty:
        table = table.join(transfer_in_out(results.transfer_settings))
    attacked = [c for c in table.columns if c.startswith("ε") or c == "transfer in"]
    table = mark_not_learned(table.fillna("–"), attacked, flagged_checks(results.diagnostics, settings, CHANCE).index)
    table["flags ⚑"] = flagged_checks(results.diagnostics, settings).reindex(table.index).fillna("")
    return table.rename_axis("model").reset_index()


def models_section(doc: Document, results: Results, plots: Path | None = None) -> None:
    """The lead section: the sweep's own settings side by side (models_table), what the columns are, and the curves
    over ε."""
    transfer = results.transfer_settings
    not_learned = flagged_checks(results.diagnostics, job_settings(results.summary), CHANCE)
    doc.heading("Models side by side")
    doc.table(models_table(results))          # the numbers first: the first screen of the report
    doc.text("Per model (a setting: its jobs are its seeds), mean ± 95% interval over seeds: test error and mean "
             "confidence on clean inputs; the robustness curve: at each ε, the error under the strongest attack of "
             "the honest evaluation (per example, any attack that fooled it, at the clipping of the job's own attack) "
             "with FGSM's (the job's own attack) beside it; the ε that fools half the test set (on the highest error "
             "measured at each ε, linear between them; > ε: not within the largest ε evaluated)"
             + (f"; the mean error that the other models' examples cause on it (transfer in) and that its examples "
                f"cause on them (transfer out), FGSM at ε={transfer['eps'].max():g}" if not transfer.empty else "")
             + "; the diagnostics flagged on some of its jobs (see \"Can these numbers be trusted?\")."
             + (" " + NOT_LEARNED if len(not_learned) else ""))
    minimum_norm_section(doc, results)
    if plots is not None:
        for column, ylabel in (("error", "FGSM error rate"), ("confidence", "mean confidence under FGSM")):
            plot_curves(results.summary, column, plots / f"{column}_vs_eps.png", ylabel)
            doc.image(f"{PLOTS}/{column}_vs_eps.png", f"{ylabel} vs ε (mean over seeds, 95% interval)")


def minimum_norm_section(doc: Document, results: Results) -> None:
    """Per setting: the minimum-norm attack's curve (one run, clipped to [0, 1]) at each ε and its median smallest
    fooling ε, mean ± 95% interval over seeds; nothing when the evaluation ran no minimum-norm attack."""
    rows = results.evaluations
    found = rows[rows["evaluation"].str.endswith(":median_eps")] if not rows.empty else rows
    if found.empty:
        return
    settings = job_settings(results.summary)
    curve = rows[rows["evaluation"] == found["evaluation"].iloc[0].split(":")[0]]
    table = curve.assign(setting=curve["job_id"].map(settings)).pivot_table(
        index="setting", columns="eps", values="error", aggfunc=interval)
    table.columns = [f"ε={eps:g}" for eps in table.columns]

    medians = found.assign(setting=found["job_id"].map(settings)).groupby("setting")["eps"]
    table["median smallest ε"] = medians.agg(lambda values: eps_interval(values, "∞ (half never fooled)"))
    doc.text("The curve from one minimum-norm attack, per model:")   # part of the models' section, not a section
    doc.table(table.rename_axis("model").reset_index())
    doc.text("Error at every ε from one run of a minimum-norm attack (FAB, clipped to [0, 1]): each example's "
             "smallest fooling ε, so the curve never falls; median smallest ε: the ε that fools half the test set "
             "(pixel units, comparable across data sets). `strongest` holds this curve per example; the diagnostic "
             "minimum_norm_gap flags a curve below a fixed-ε attack at the same ε.")


def files_table(results: Results) -> pd.DataFrame:
    """One row per model evaluated from a file (model=pretrained, a zoo member), whatever its seeds: its name as
    results give it, the file and the file's sha256 (what its job id holds)."""
    rows: dict[str, dict[str, str]] = {}
    for config in results.jobs["config"]:
        model = config.get("model") or {}
        if model.get("sha256"):
            name = str((config.get("choices") or {}).get("model") or model.get("name"))
            rows.setdefault(name, {"model": name, "file": str(model.get("path")), "sha256": model["sha256"]})
    return pd.DataFrame(list(rows.values()), columns=["model", "file", "sha256"])


def files_section(doc: Document, results: Results) -> None:
    files = files_table(results)
    if len(files):
        doc.text("The models evaluated from files, not trained here (their job ids hold the files' sha256):")
        doc.table(files)
