"""The report: the machine it ran on, skipped entries, verdicts and the Markdown table of the results."""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

COMPARED = ("fgsm_curve", "fgsm", "adversarial_step", "lightning_epoch")   # stages whose result is a list of rows


def skipped(cid: str, reason: str) -> dict[str, Any]:
    return {"id": cid, "skipped": reason}


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def seconds(value: float) -> str:
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 1e-3:
        return f"{value * 1e3:.2f} ms"
    return f"{value * 1e6:.0f} µs"


def verdict(entry: dict[str, Any]) -> str:
    if not entry.get("judged", True):
        return "not judged (--quick)"
    return "pass" if entry.get("passed") else "**FAIL**"


def row(*cells: str) -> str:
    """A table row; an empty cell is written `| |`, as everywhere in the table."""
    return "|" + "|".join(f" {cell} " if cell else " " for cell in cells) + "|"


def measured(report: dict[str, Any], name: str, title: str, target: str = "", failed: str = "",
             prefix: str = "skipped: ") -> tuple[list[str], Any]:
    """([its row], None) for a stage that measured nothing (skipped, or stopped by an error), else ([], its
    result)."""
    entry = report.get(name, skipped(name, "not run"))
    if isinstance(entry, dict) and "skipped" in entry:
        return [row(title, "", "", "", "", prefix + entry["skipped"], target, "")], None
    if isinstance(entry, dict) and "error" in entry:
        return [row(title, "", "", "", "", f"error: {entry['error']}", target, failed)], None
    return [], entry


def markdown(report: dict[str, Any]) -> str:
    lines = ["| comparison | model | batch | measured | reference | ratio: median [IQR] (min–max) | target | result |",
             "|---|---|---|---|---|---|---|---|"]
    for name in COMPARED:
        found, entries = measured(report, name, name)
        lines += found
        for e in entries or []:
            r, m, ref = e["ratio"], e["measured"], e["reference"]
            sign = "≥" if e["target"]["op"] == ">=" else "≤"
            lines.append(row(e["title"], e["model"], f"{e['batch_size']:,}",
                             f"{m['label']}: {seconds(m['seconds']['median'])}",
                             f"{ref['label']}: {seconds(ref['seconds']['median'])}",
                             f"{r['median']:.2f}× [{r['q1']:.2f}–{r['q3']:.2f}] ({r['min']:.2f}–{r['max']:.2f})",
                             f"{sign} {e['target']['value']:g}×", verdict(e)))
    return "\n".join(lines + count_rows(report) + scale_rows(report) + ray_rows(report) + gpu_rows(report))


def count_rows(report: dict[str, Any]) -> list[str]:
    """Passes and input gradients counted by hooks, and the evaluation stage's time by attack (timed, not judged)."""
    lines = []
    if isinstance(steps := report.get("adversarial_step"), list) and steps:
        passes = {e["model"]: e["passes"]["adversarial"] for e in steps}
        lines.append(row("adversarial step passes (hooks)", "", "", "; ".join(
            f"{name}: {c['forwards']} forwards, {c['backwards']} backwards" for name, c in passes.items()),
            "", "", "2 and 2", ""))
    found, transfer = measured(report, "transfer", "transfer stage, input gradients")
    lines += found
    if transfer:
        lines.append(row(f"transfer stage, M = {transfer['models']} models, K = {transfer['epsilons']} ε", "",
                         f"{transfer['examples']:,}", f"input gradients: {transfer['input_gradients_reported']} "
                         f"reported, {transfer['input_gradients_hooked']} by hooks", "", "",
                         f"= M = {transfer['models']}", ""))
    found, evaluation = measured(report, "evaluation", "evaluation stage per job")
    lines += found
    for model, times in (evaluation or {}).get("per_model", {}).items():
        split = ", ".join(f"{name} {seconds(value)}" for name, value in times.items() if name != "total")
        lines.append(row("evaluation stage per job, by attack (both clippings)", model,
                         f"{evaluation['examples']:,}", f"{seconds(times['total'])}: {split}", "", "", "timed", ""))
    for model, cost in (evaluation or {}).get("curve_cost", {}).items():
        lines.append(row("evaluation stage per job: the six-ε curve vs one ε before it", model,
                         f"{evaluation['examples']:,}", f"ε=.05-.3, the curve: {seconds(cost['curve'])}",
                         f"ε=.25, before the curve: {seconds(cost['today'])}",
                         f"{cost['curve'] / cost['today']:.2f}×", "≤ 1.5×", "timed"))
    if (evaluation or {}).get("curve_cost"):   # a stage's cost is its jobs' sum: the three kinds together
        curve, today = (sum(cost[k] for cost in evaluation["curve_cost"].values()) for k in ("curve", "today"))
        lines.append(row("evaluation stage: the six-ε curve vs one ε before it, the jobs above together",
                         ", ".join(evaluation["curve_cost"]), f"{evaluation['examples']:,}",
                         f"the curve: {seconds(curve)}", f"before: {seconds(today)}", f"{curve / today:.2f}×",
                         "≤ 1.5×", "timed"))
    for limit, parts in (evaluation or {}).get("autoattack_growth", {}).items():
        split = ", ".join(f"{name} {seconds(value)}" for name, value in parts.items() if name != "attacked")
        total = sum(value for name, value in parts.items() if name != "attacked")
        lines.append(row(f"AutoAttack per job by survivors attacked (limit {limit}, ε=0.05)", "maxout",
                         str(parts["attacked"]), f"{seconds(total)}: {split}", "", "", "timed", ""))
    return lines


def scale_rows(report: dict[str, Any]) -> list[str]:
    """Planning per job and the transfer stage as seeds grow."""
    lines, plan = measured(report, "planning", "planning, main grid", "≤ 3 ms/job", failed="**FAIL**")
    if plan:
        small, large = plan["runs"]
        big = plan["big"]
        lines.append(row(f"planning: marginal cost per job, {small['jobs']:,} → {large['jobs']:,} jobs", "", "",
                         f"{plan['marginal_ms_per_job']:.2f} ms/job ({small['seconds']:.1f} s, "
                         f"{large['seconds']:.1f} s; {large['composed']} Hydra compositions)",
                         f"Hydra composing each job: {plan['reference_ms_per_job']:.1f} ms/job",
                         # no speedup when noise makes the marginal cost ≤ 0 (the larger plan was not slower)
                         f"{plan['speedup']:.0f}× faster" if plan["speedup"] is not None else "within noise",
                         "≤ 3 ms/job", verdict(plan)))
        lines.append(row(f"planning: `plan_only=true`, {big['jobs']:,} jobs", "", "",
                         f"{big['seconds']:.1f} s, peak memory {big['peak_bytes'] / 1e9:.2f} GB; "
                         f"plan.json {big['plan_bytes'] / 1e6:.0f} MB", "", "", "≤ 30 s, ≤ 1 GB", ""))
    found, scaling = measured(report, "transfer_scaling", "transfer stage vs seeds", "≤ 1.25×", failed="**FAIL**")
    lines += found
    for pairs in ("seed_matched", "all") if scaling else ():
        runs = [r for r in scaling["runs"] if r["pairs"] == pairs]
        cells = "; ".join(f"S={r['seeds']}: {r['rows']:,} rows, {r['seconds']:.1f} s" for r in runs)
        judged = pairs == "seed_matched"
        lines.append(row(f"transfer stage, 2 models × S seeds, pairs={pairs}", "", "", cells,
                         "models per task: " + ", ".join(sorted({str(max(r['models_loaded'])) for r in runs})),
                         f"{scaling['per_seed_growth']:.2f}× time per seed, S={runs[0]['seeds']} → {runs[-1]['seeds']}"
                         if judged else "quadratic in seeds", "≤ 1.25×" if judged else "",
                         verdict(scaling) if judged else ""))
    return lines


def ray_rows(report: dict[str, Any]) -> list[str]:
    """The sweep on two nodes, the per-job overhead of short jobs, the Hydra launchers and the main job."""
    lines, sweep = measured(report, "sweep", "sweep on a two-node local Ray cluster", "≥ 85%", failed="**FAIL**")
    if sweep:
        lines.append(row("sweep on a two-node local Ray cluster", f"{sweep['jobs']} jobs of "
                         f"experiment={sweep['experiment']}, {sweep['slots']} slots", "",
                         f"Σ job time / slots: {sweep['sum_job_seconds'] / max(sweep['slots'], 1):.1f} s",
                         f"wall: {sweep['wall_seconds']:.1f} s", f"{sweep['efficiency']:.0%} cold, "
                         f"{sweep['warm']['efficiency']:.0%} on warm workers (train time only: "
                         f"{sweep['efficiency_train_only']:.0%})", "≥ 85%", verdict(sweep)))
    found, overhead = measured(report, "overhead", "per-job overhead", "≥ 90% warm", failed="**FAIL**")
    lines += found
    for name in ("cold", "warm") if overhead else ():
        r = overhead[name]
        where = ", ".join(f"{part} {share:.0%}" for part, share in r["where"].items())
        lines.append(row(f"{overhead['title']} ({name})", "softmax", "100",
                         f"job {r['mean_job_seconds'] * 1e3:.0f} ms (training {r['mean_train_seconds'] * 1e3:.0f} ms)"
                         f", {overhead['slots']} slots", f"wall {r['wall_seconds']:.1f} s",
                         f"{r['efficiency_train_only']:.0%} training, {r['efficiency']:.0%} in jobs ({where})",
                         "≥ 90% warm" if name == "warm" else "", verdict(overhead) if name == "warm" else ""))
    found, launcher = measured(report, "launcher", "Hydra multirun launchers", "≥ 1×", failed="**FAIL**")
    lines += found
    if launcher:
        lines.append(row(f"Hydra multirun, {launcher['jobs']} one-epoch jobs", "", "",
                         f"hydra/launcher=ray: {launcher['ray']['wall_seconds']:.1f} s",
                         f"basic launcher: {launcher['basic']['wall_seconds']:.1f} s",
                         f"{launcher['ratio']:.2f}× faster", "≥ 1×", verdict(launcher)))
    found, main = measured(report, "main_job", "the main job", "≤ 5 min")
    lines += found
    if main:
        wall = f"{main['wall_seconds']:.0f} s" if main.get("wall_seconds") is not None else "—"
        extra = f" (exit {main['returncode']}: {main.get('error', '')})" if main.get("returncode") else ""
        lines.append(row("the main job", "", "", f"`python -m jobs.sweep`: {wall}{extra}", "", "", "≤ 5 min",
                         verdict(main)))
    found, auth = measured(report, "auth", "the main job, Ray token auth on / off")
    lines += found
    if auth:
        on, off = (f"{auth[side]['wall_seconds']:.0f} s" for side in ("on", "off"))
        lines.append(row("the main job, Ray token auth on / off", "", "", f"on (default): {on}",
                         f"off (`cluster.auth=false`): {off}", f"{auth['ratio']:.2f}×", "", ""))
    return lines


def gpu_rows(report: dict[str, Any]) -> list[str]:
    """The GPU extras: a maxout epoch over on-device tensors, and jobs per GPU."""
    lines, gpu = measured(report, "gpu", "GPU extras", prefix="")
    if gpu:
        e = gpu["maxout_epoch_60000"]
        lines.append(row(f"GPU: maxout epoch, {e['examples']:,} × 784", "maxout", "100",
                         f"Lightning: {seconds(e['measured']['seconds']['median'])}",
                         f"plain loop: {seconds(e['reference']['seconds']['median'])}",
                         f"{e['ratio']['median']:.2f}×", "", ""))
        for p in gpu["packing"]:
            lines.append(row(f"GPU: {p['jobs_per_gpu']} jobs per GPU", "", "",
                             f"{p['jobs']} jobs in {p['wall_seconds']:.1f} s ({p['jobs_per_minute']:.1f}/min, at most "
                             f"{p['most_at_once']} at once)", "", f"{p['speedup_vs_1']:.2f}× vs 1 per GPU", "", ""))
    return lines
