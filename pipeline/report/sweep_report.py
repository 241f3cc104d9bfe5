"""The sweep report: the sweep's own models side by side first, the paper's claims beside ours when the sweep holds
the paper's settings on the paper's data, then tables and plots from summary.csv, transfer.csv and evaluations.csv,
and the paper's figures, as report.md and report.html (one Document, two renderings).
"""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Collection, Sequence

import pandas as pd

from pipeline.paper.claims import CLAIMS, LEFT_OUT
from pipeline.paper.results import Results
from pipeline.paper.verdicts import FAIL, NOT_RUN, ONE_SEED, PASS, UNCLEAR, claims_table
from pipeline.report.document import Document
from pipeline.report.models import files_section, models_section
from pipeline.report.plots import PLOTS, Examples, plot_examples, plot_transfer
from pipeline.report.settings import (CHANCE, NOT_LEARNED, flagged_checks, job_settings,
                                      mark_not_learned, with_interval)
from pipeline.stats import percent

if TYPE_CHECKING:   # figures draws with this package's plots
    from pipeline.paper.figures import Drawn



def leaks_labels(rows: pd.DataFrame) -> pd.Series:
    """Adversarial accuracy above clean accuracy: the attack helps the model, a sign of label leaking."""
    return rows["error"] < rows["clean_error"] - 1e-9


HOW_VERDICTS_ARE_MADE = (f"Verdicts: {PASS} / {FAIL} when the 95% interval of a check's difference lies on one side "
            "of 0, "
            f"{UNCLEAR} when it holds 0, {NOT_RUN} (with the reason) when this sweep has no job of a setting the "
            "claim needs or did not measure the ε it reads. A quantity of one seed has no interval, so neither has a "
            f"difference it enters: its means decide and the verdict says so, {PASS}{ONE_SEED} or {FAIL}{ONE_SEED} "
            "(run more seeds to judge it). On the paper's own data set each of our means must also lie within the "
            "stated band of the paper's number. Checks compare means over seeds (Student's t intervals; a setting's "
            "jobs are its seeds). The paper's numbers are on full MNIST (CIFAR-10 for the conv net) with its "
            "unclipped FGSM. A claim that a model resists FGSM also shows its error under the strongest attack of "
            "the honest evaluation (FGSM, PGD and APGD-CE per example, the job's own clipping); the check is FGSM's.")


def attack_table(summary: pd.DataFrame, evaluations: pd.DataFrame, clip: str, eps: float,
                 not_learned: Collection[str] = ()) -> pd.DataFrame:
    """Per setting: clean error and each evaluation attack's error at ε (mean over seeds), in the order of
    evaluations.csv (the attacks as configured, then `strongest`), ⚑ on those of settings that have not learned,
    and which attacks show adversarial accuracy above clean accuracy on some job (label leaking)."""
    settings = job_settings(summary)
    rows = evaluations[(evaluations["clip"] == clip) & ((evaluations["eps"] - eps).abs() < 1e-9)].copy()
    rows["setting"] = settings.reindex(rows["job_id"]).to_numpy()
    table = rows.pivot_table(index="setting", columns="evaluation", values="error")
    table = table[list(dict.fromkeys(rows["evaluation"]))].map(percent)
    mark_not_learned(table, list(table.columns), not_learned)
    table.insert(0, "clean error", rows.groupby("setting")["clean_error"].mean().map(percent))
    leaking = rows[leaks_labels(rows)].groupby("setting")["evaluation"].agg(lambda names: ", ".join(sorted(set(names))))
    table["label leaking ⚑"] = leaking.reindex(table.index).fillna("")
    return table.reset_index()


def curve_leaks(summary: pd.DataFrame) -> list[str]:
    """Settings whose own FGSM curve has error below clean error at some ε > 0."""
    rows = summary[(summary["eps"] > 0) & leaks_labels(summary)]
    return sorted(set(rows["setting"]))


def holds_paper_settings(table: pd.DataFrame) -> bool:
    """Whether some claim was measured: a sweep of other models (a zoo) gets no section of NOT RUN rows."""
    return any(not str(verdict).startswith(NOT_RUN) for verdict in table["verdict"])


# The data sets the paper's numbers are on, as job configs name them (data.name): its MNIST claims hold on MNIST's
# digits (all of them, or the 5,000 embedded), its conv-net claim on CIFAR-10. On other data (a user's .npz,
# Fashion-MNIST) a claim would hold the paper's numbers against another data set's.
PAPERS_DATA = {"mnist": ("mnist", "mnist5k"), "cifar10": ("cifar10",)}


def on_papers_data(results: Results, data: str = "mnist") -> Results:
    """The results of the jobs on the data of the paper's claims about `data` (a claim's `data`)."""
    return replace(results, jobs=results.jobs[results.jobs["data"].isin(PAPERS_DATA.get(data, (data,)))])


def paper_claims(results: Results) -> pd.DataFrame:
    """The claims table, each claim judged on the jobs on its own data only."""
    return pd.concat([claims_table(on_papers_data(results, claim.data), [claim]) for claim in CLAIMS],
                     ignore_index=True)


def claims_section(doc: Document, table: pd.DataFrame) -> None:
    doc.heading("Paper vs this run")
    doc.table(table)
    doc.text(HOW_VERDICTS_ARE_MADE)
    doc.text("Not reproduced: " + " ".join(LEFT_OUT))


CURVE_ROWS = ("fgsm", "fgsm_predicted_labels", "strongest", "exact")   # at every ε of a curve


def checked_epsilons(evaluations: pd.DataFrame) -> list[float]:
    """The ε at which some attack beyond FGSM and the minimum-norm curve ran (those run at every ε: their tables
    would repeat Models side by side); every ε when none did."""
    curves = {name.split(":")[0] for name in evaluations["evaluation"] if name.endswith(":median_eps")}
    named = evaluations["evaluation"].str.split(":").str[0]
    fixed = evaluations[~named.isin([*CURVE_ROWS, *curves, "rubbish", "one_member"])]
    every = evaluations[~evaluations["evaluation"].str.contains(":")]       # not a median's ε
    return [float(e) for e in sorted(fixed["eps"].dropna().unique()) or sorted(every["eps"].dropna().unique())]


def honest_section(doc: Document, summary: pd.DataFrame, evaluations: pd.DataFrame,
                   not_learned: Collection[str]) -> None:
    doc.heading("Honest evaluation: stronger attacks, clipping, predicted labels")
    doc.text("Error rates at ε on the test set, mean over seeds. fgsm: true labels; fgsm_predicted_labels: crafted "
             "with the model's own predictions (no label leaking); fgsm_random_start: a uniform random start in the "
             "ε-ball, then one signed-gradient step; pgd: projected gradient ascent from a random start; apgd: "
             "APGD-CE (Croce & Hein 2020, AutoAttack's first attack: momentum, a step size that halves where the "
             "cost stalls); autoattack (clipped only): the reference AutoAttack run on what those left standing, so "
             "its "
             "column is the union so far; strongest: per job, an example counts as fooled when any of these attacks "
             "fooled it (the per-example union, so at least the largest of the job's error rates), then the mean "
             "over seeds; exact: the closed-form worst case of a model affine in x (strongest below it: an attack "
             "failure). "
             "strongest above fgsm on an adversarially trained model is gradient masking: FGSM overstates its "
             "robustness. ⚑ marks attacks under which some job's error falls below its clean error (adversarial "
             "accuracy above clean accuracy: label leaking)." + (" " + NOT_LEARNED if len(not_learned) else ""))
    attacks = evaluations[~evaluations["evaluation"].isin(["rubbish", "one_member"])
                          & ~evaluations["evaluation"].str.contains(":")]     # AutoAttack's parts: the trust section
    shown = checked_epsilons(evaluations)
    if len(shown) < attacks["eps"].dropna().nunique():
        listed = ", ".join(f"{eps:g}" for eps in shown)
        doc.text(f"At the ε where attacks beyond FGSM and the minimum-norm curve ran ({listed}); the curve at every "
                 "ε is in Models side by side.")
    for clip in sorted(attacks["clip"].unique(), key=lambda c: c != "none"):
        for eps in shown:
            clipping = "unclipped (the paper's FGSM)" if clip == "none" else f"clipped to [{clip.replace('-', ', ')}]"
            doc.text(f"ε={eps:g}, {clipping}")
            doc.table(attack_table(summary, attacks, clip, eps, not_learned))
    leaks = curve_leaks(summary)
    doc.text(f"⚑ Own FGSM curves with error below clean error at some ε: {', '.join(leaks) if leaks else 'none'}.")


TRUST = ("Each check of pipeline/evaluation/diagnostics.py per setting: its value (mean over seeds; points of error, "
         "except stochastic: the largest change of a logit between two eval-mode passes) and ⚑ k/n when it exceeds its "
         "threshold (conf/sweep.yaml `evaluation.diagnostics`) on k of the setting's n jobs. single_step_gap: "
         "strongest − FGSM (FGSM overstates robustness); monotone_fgsm: the largest fall of the job's FGSM error as ε "
         "grows; unbounded: share APGD at ε = 1 leaves correct; black_box: share Square (no gradients) fools after "
         "every gradient attack; transfer: other models' FGSM examples above the model's own FGSM error; convergence: "
         "error APGD with twice the steps adds on the survivors; zero_gradients: share of all-zero input gradients; "
         "probabilities: share of output rows that are probabilities; chance_error: clean error as a share of a "
         "guess's (1 − 1/K); chance_confidence: 1 − mean clean confidence as a share of a guess's (1 at uniform "
         "outputs), both flagged when the model has not learned; exact_gap: exact − strongest on a model affine in x "
         "(any gap is an attack failure); autoattack_unattacked: share of the examples left standing that AutoAttack's "
         "`limit` did not attack (flagged: autoattack and strongest are lower bounds). Single-ε checks read "
         "evaluation.diagnostics.eps, clipped to [0, 1].")


def check_cell(values: pd.Series, flags: pd.Series, check: str) -> str:
    shown = f"{values.mean():.2g}" if check == "stochastic" else f"{100 * values.mean():.1f}"
    return shown + (f" ⚑ {int(flags.sum())}/{len(flags)}" if flags.any() else "")


def trust_table(diagnostics: pd.DataFrame, settings: pd.Series) -> pd.DataFrame:
    """Settings × checks: mean value over the setting's jobs and how many of them the check flagged."""
    rows = diagnostics.assign(setting=settings.reindex(diagnostics["job_id"]).to_numpy(),
                              flag=diagnostics["flag"].astype(bool))
    cells = {(setting, check): check_cell(group["value"], group["flag"], check)
             for (setting, check), group in rows.groupby(["setting", "check"])}
    table = pd.Series(cells).unstack().fillna("–")
    return table[list(dict.fromkeys(rows["check"]))].rename_axis("setting").reset_index()


def order_table(evaluations: pd.DataFrame, settings: pd.Series, clip: str, eps: float) -> pd.DataFrame:
    """Settings × attacks in evaluation order: examples each attack fooled that the ones before it did not
    (summed over seeds), and, for affine models, each attack's error below the exact one."""
    rows = evaluations[(evaluations["clip"] == clip) & ((evaluations["eps"] - eps).abs() < 1e-9)].copy()
    rows["setting"] = settings.reindex(rows["job_id"]).to_numpy()
    ordered = rows[rows["fooled_new"].notna() & (rows["evaluation"] != "autoattack")]
    table = ordered.pivot_table(index="setting", columns="evaluation", values="fooled_new", aggfunc="sum")
    # "–": the attack did not run on that setting's jobs (AutoAttack's parts only run where examples survived)
    table = table[list(dict.fromkeys(ordered["evaluation"]))].map(lambda n: "–" if math.isnan(n) else f"{int(n)}")
    exact = rows[rows["evaluation"] == "exact"].groupby("setting")["error"].mean()
    strongest = rows[rows["evaluation"] == "strongest"].groupby("setting")["error"].mean()
    table["exact − strongest"] = (exact - strongest).reindex(table.index).map(
        lambda gap: "–" if math.isnan(gap) else f"{100 * gap:.1f} pts" + (" ⚑" if gap > 1e-9 else ""))
    return table.reset_index()


def trust_section(doc: Document, summary: pd.DataFrame, evaluations: pd.DataFrame, diagnostics: pd.DataFrame,
                  eps: float) -> None:
    doc.heading("Can these numbers be trusted?")
    settings = job_settings(summary)
    if not diagnostics.empty:
        doc.text(TRUST)
        doc.table(trust_table(diagnostics, settings))
    if "fooled_new" in evaluations and (evaluations["clip"] == "0-1").any():
        doc.text(f"Which attack decides the number (ε={eps:g}, clipped to [0, 1]): the examples each attack fooled "
                 "that the attacks before it did not, summed over seeds, in evaluation order (ours, then "
                 "AutoAttack's components on what ours left standing); and, where the model is affine in x, how "
                 "far `strongest` stays below the exact worst case.")
        doc.table(order_table(evaluations, settings, "0-1", eps))


def transfer_section(doc: Document, table: pd.DataFrame, plots: Path) -> None:
    """Per setting, not per job: heatmaps of the transfer error (and agreement) averaged over seeds, and one row
    per crafting setting, so that the section stays legible with dozens of settings."""
    doc.heading("Transfer")
    doc.text("Rows: the setting the examples were crafted on; columns: the setting that predicts them; jobs of the "
             "same seed, averaged over seeds (the diagonal is the white-box attack). Agreement: how often the target "
             "predicts the source's wrong class, over examples both misclassify. transfer_settings.csv has every "
             "pair of settings with its 95% interval, transfer.csv every pair of jobs.")
    top = table["eps"].max()
    for eps, value in [(e, "error") for e in sorted(table["eps"].unique()) if e > 0] + [(top, "agreement_both_wrong")]:
        name = f"transfer_eps{eps:g}.png" if value == "error" else f"transfer_agreement_eps{eps:g}.png"
        plot_transfer(table, eps, plots / name, value)
        doc.image(f"{PLOTS}/{name}", f"transfer {value.replace('_', ' ')} at ε={eps:g}")
    doc.text(f"At ε={top:g}, per crafting setting: its white-box error (on its own models), and the error it causes "
             "on the other settings' models (mean over those settings, and the one it fools most and least).")
    doc.table(transfer_summary(table[table["eps"] == top]))


def transfer_summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per source setting of the per-setting transfer table at one ε."""
    rows = []
    for source, group in table.groupby("source"):
        own, others = group[group["target"] == source], group[group["target"] != source].sort_values("error")
        white_box = own["error"].iloc[0] if len(own) else float("nan")
        half = own["error_half"].iloc[0] if len(own) else float("nan")
        rows.append({"crafted on": source, "white-box error": with_interval(white_box, half),
                     "on other settings (mean)": percent(others["error"].mean()) if len(others) else "–",
                     "fools most": fools(others, -1), "fools least": fools(others, 0),
                     "seeds": int(group["seeds"].max())})
    return pd.DataFrame(rows)


def fools(others: pd.DataFrame, at: int) -> str:
    """The setting at position `at` of others sorted by error, with its error ("–" when there is none)."""
    return f"{others['target'].iloc[at]} ({percent(others['error'].iloc[at])})" if len(others) else "–"


def write_report(sweep_dir: Path, name: str, results: Results, failed: dict[str, str],
                 examples: dict[str, Examples], figures: Sequence["Drawn"] = (),
                 stale: Sequence[str] = (), trust_eps: float = 0.25) -> Path:
    """Plots under plots/, then report.md and report.html in the sweep directory; returns report.html. The sweep's
    own models come first; the paper's claims, their verdict counts and the paper's figures only when some claim was
    measured on the paper's data. `stale`: the settings of complete jobs made by other code than the sweep's (one
    entry per job); `trust_eps`: the ε of the attack-order table (evaluation.diagnostics.eps)."""
    summary, evaluations = results.summary, results.evaluations
    plots = sweep_dir / PLOTS
    plots.mkdir(parents=True, exist_ok=True)
    doc = Document(f"Harness sweep '{name}'")
    doc.text(f"{summary['job_id'].nunique() if not summary.empty else 0} complete jobs, {len(failed)} failed. "
             "Errors are test-set error rates; confidence is the mean probability of the predicted class.")
    if stale:
        counts = pd.Series(list(stale)).value_counts()
        doc.text(f"⚠ {len(stale)} of these jobs were made by other code than this sweep's (pipeline/provenance.py): "
                 + ", ".join(f"{setting} ×{count}" for setting, count in counts.items())
                 + ". Their results are included; `python -m jobs.sweep rerun=stale <same arguments>` retrains them.")
    claims = paper_claims(results) if not summary.empty else None
    of_the_paper = claims is not None and holds_paper_settings(claims)
    if of_the_paper:
        doc.tally(claims["verdict"])          # before the first heading: the counts open the report
    if not summary.empty:
        models_section(doc, results, plots)
    files_section(doc, results)
    if failed:
        doc.heading("Failed jobs")
        doc.table(pd.DataFrame([{"job": job, "reason": reason} for job, reason in failed.items()]))
    if of_the_paper:
        claims_section(doc, claims)
    if summary.empty:
        return _save(sweep_dir, doc)
    not_learned = flagged_checks(results.diagnostics, job_settings(summary), CHANCE).index
    if not evaluations.empty:
        honest_section(doc, summary, evaluations, not_learned)
        trust_section(doc, summary, evaluations, results.diagnostics, trust_eps)
    if figures and of_the_paper:
        doc.heading("The paper's figures")
        for figure in figures:
            doc.image(f"{PLOTS}/{figure.file}", figure.caption)
    if not results.transfer_settings.empty:
        transfer_section(doc, results.transfer_settings, plots)
    if examples:
        doc.heading("Adversarial examples")
        doc.text("The first test images of each model's first seed and their FGSM versions (the job's own attack); "
                 "under each, its true class → the model's prediction, in red and framed where it is wrong.")
        labels = dict(zip(summary["job_id"], summary["setting"]))
        for job, shown in examples.items():
            plot_examples(shown, plots / f"examples_{job}.png")
            doc.image(f"{PLOTS}/examples_{job}.png", f"FGSM examples crafted on {labels.get(job, job)}")
    return _save(sweep_dir, doc)


def _save(sweep_dir: Path, doc: Document) -> Path:
    from pipeline.store import atomic_write

    atomic_write(sweep_dir / "report.md", lambda tmp: tmp.write_text(doc.markdown()))
    atomic_write(sweep_dir / "report.html", lambda tmp: tmp.write_text(doc.html(sweep_dir)))   # plots embedded
    return sweep_dir / "report.html"
