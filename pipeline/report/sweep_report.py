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

from pipeline.clipping import clip_name
from pipeline.paper.claims import CLAIMS, LEFT_OUT
from pipeline.paper.results import Results, lookup
from pipeline.paper.verdicts import FAIL, NOT_RUN, ONE_SEED, PASS, UNCLEAR, claims_table
from pipeline.report.document import Document
from pipeline.report.plots import Examples, plot_curves, plot_examples, plot_transfer
from pipeline.stats import estimate, percent

if TYPE_CHECKING:   # figures draws with this package's plots
    from pipeline.paper.figures import Drawn

PLOTS = "plots"


# The diagnostics that say a model has not learned: its numbers under attack carry ⚑ wherever they are shown.
CHANCE = ("chance_error", "chance_confidence")
NOT_LEARNED = ("⚑ after an error under attack: some job of that model has not learned (its clean error or mean "
               "confidence is near chance: the chance_error and chance_confidence diagnostics), so the number says "
               "nothing of its robustness. Train it longer or with another optimizer.")


def job_settings(summary: pd.DataFrame) -> pd.Series:
    """job id -> its setting."""
    return summary.drop_duplicates("job_id").set_index("job_id")["setting"]


def flagged_checks(diagnostics: pd.DataFrame, settings: pd.Series, checks: Sequence[str] | None = None
                   ) -> pd.Series:
    """setting -> the checks (of `checks`; None: any) flagged on some of its jobs, comma-separated; settings
    with none are left out."""
    if diagnostics.empty:
        return pd.Series(dtype=str)
    flagged = diagnostics[diagnostics["flag"].astype(bool)
                          & (diagnostics["check"].isin(checks) if checks is not None else True)]
    named = flagged.assign(setting=settings.reindex(flagged["job_id"]).to_numpy())
    return named.groupby("setting")["check"].agg(lambda found: ", ".join(sorted(set(found))))


def mark_not_learned(table: pd.DataFrame, columns: Sequence[str], not_learned: Collection[str]) -> pd.DataFrame:
    """The cells of `columns` (errors under attack) in the rows of settings that have not learned, with ⚑; the
    table's index is the setting."""
    rows = table.index.isin(list(not_learned))
    for column in columns:
        table.loc[rows, column] = table.loc[rows, column].map(lambda cell: cell if cell == "–" else f"{cell} ⚑")
    return table


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


def interval(values: pd.Series) -> str:
    """Mean ± 95% interval over seeds, as a percentage ("–" without a finite value)."""
    found = estimate(values)
    return "–" if found is None else with_interval(found.mean, found.half)


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

    def cell(values: pd.Series) -> str:
        if not values.map(math.isfinite).all():
            return f"> {curves['eps'].max():g}"
        found = estimate(values)
        return f"{found.mean:.3g}" + ("" if math.isnan(found.half) else f" ± {found.half:.2g}")

    return per_job.groupby(level="setting").agg(cell)


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

    def median(values: pd.Series) -> str:
        if not values.map(math.isfinite).all():
            return "∞ (half never fooled)"
        e = estimate(values)
        return f"{e.mean:.3g}" + ("" if math.isnan(e.half) else f" ± {e.half:.2g}")

    medians = found.assign(setting=found["job_id"].map(settings)).groupby("setting")["eps"]
    table["median smallest ε"] = medians.agg(median)
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


def claims_section(doc: Document, table: pd.DataFrame) -> None:
    doc.heading("Paper vs this run")
    doc.table(table)
    doc.text(HOW_VERDICTS_ARE_MADE)
    doc.text("Not reproduced: " + " ".join(LEFT_OUT))


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
    for clip in sorted(attacks["clip"].unique(), key=lambda c: c != "none"):
        for eps in sorted(attacks["eps"].dropna().unique()):
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


def with_interval(mean: float, half: float) -> str:
    return percent(mean) if math.isnan(half) else f"{100 * mean:.1f} ± {100 * half:.1f}%"


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
