"""The report: the machine it ran on, skipped entries, verdicts and the Markdown table of the results."""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch


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


def op_text(target: dict[str, Any], unit: str = "×") -> str:
    sign = "≥" if target["op"] == ">=" else "≤"
    return f"{sign} {target['value']:g}{unit}"


def row(*cells: str) -> str:
    """A table row; an empty cell is written `| |`, as everywhere in the table."""
    return "|" + "|".join(f" {cell} " if cell else " " for cell in cells) + "|"


def unmeasured(title: str, entry: dict[str, Any], target: str = "", failed: str = "", prefix: str = "skipped: "
               ) -> str | None:
    """The row of a stage that measured nothing (skipped, or stopped by an error); None when it measured."""
    if "skipped" in entry:
        return row(title, "", "", "", "", prefix + entry["skipped"], target, "")
    if "error" in entry:
        return row(title, "", "", "", "", f"error: {entry['error']}", target, failed)
    return None


def markdown(report: dict[str, Any]) -> str:
    lines = ["| comparison | model | batch | measured | reference | ratio: median [IQR] (min–max) | target | result |",
             "|---|---|---|---|---|---|---|---|"]
    for entry in report["comparisons"]:
        if (line := unmeasured(entry["id"], entry)) is not None:
            lines.append(line)
            continue
        r = entry["ratio"]
        m, ref = entry["measured"], entry["reference"]
        lines.append(
            f"| {entry['title']} | {entry['model']} | {entry['batch_size']:,} | {m['label']}: {seconds(m['seconds']['median'])}"
            f" | {ref['label']}: {seconds(ref['seconds']['median'])} | {r['median']:.2f}× [{r['q1']:.2f}–{r['q3']:.2f}]"
            f" ({r['min']:.2f}–{r['max']:.2f}) | {op_text(entry['target'])} | {verdict(entry)} |")
    counts = report["counts"]
    adv = counts.get("adversarial_step")
    if adv:
        passes = "; ".join(f"{name}: {c['adversarial']['forwards']} forwards, {c['adversarial']['backwards']} backwards"
                           for name, c in adv["per_model"].items())
        lines.append(f"| adversarial step passes (hooks) | | | {passes} | | | 2 and 2 | "
                     f"{'pass' if adv['ok'] else '**FAIL**'} |")
    transfer = counts.get("transfer")
    if transfer:
        lines.append(f"| transfer stage, M = {transfer['models']} models, K = {transfer['epsilons']} ε | | "
                     f"{transfer['examples']:,} | input gradients: {transfer['input_gradients_reported']} reported, "
                     f"{transfer['input_gradients_hooked']} by hooks | | | = M = {transfer['expected']} | "
                     f"{'pass' if transfer['ok'] else '**FAIL**'} |")
    evaluation = counts.get("evaluation")
    if evaluation:
        for model, times in evaluation["per_model"].items():
            split = ", ".join(f"{name} {seconds(value)}" for name, value in times.items() if name != "total")
            lines.append(f"| evaluation stage per job, by attack (both clippings) | {model} | {evaluation['examples']:,} "
                         f"| {seconds(times['total'])}: {split} | | | timed | |")
        for limit, parts in evaluation.get("autoattack_growth", {}).items():
            split = ", ".join(f"{name} {seconds(value)}" for name, value in parts.items() if name != "attacked")
            total = sum(value for name, value in parts.items() if name != "attacked")
            lines.append(f"| AutoAttack per job by survivors attacked (limit {limit}, ε=0.05) | maxout | "
                         f"{parts['attacked']} | {seconds(total)}: {split} | | | timed | |")
    lines += scale_rows(report)
    sweep = report["sweep"]
    if (line := unmeasured("sweep on a two-node local Ray cluster", sweep, "≥ 85%", failed="**FAIL**")) is not None:
        lines.append(line)
    else:
        lines.append(f"| sweep on a two-node local Ray cluster | {sweep['jobs']} jobs of "
                     f"experiment={sweep['experiment']}, {sweep['slots']} slots | | "
                     f"Σ job time / slots: {sweep['sum_job_seconds'] / max(sweep['slots'], 1):.1f} s | "
                     f"wall: {sweep['wall_seconds']:.1f} s | {sweep['efficiency']:.0%} cold"
                     + (f", {sweep['warm']['efficiency']:.0%} on warm workers" if sweep.get("warm") else "")
                     + f" (train time only: {sweep['efficiency_train_only']:.0%}) | ≥ 85% | {verdict(sweep)} |")
    lines += overhead_rows(report)
    main = report["main_job"]
    if "skipped" in main:
        lines.append(row("the main job", "", "", "", "", f"skipped: {main['skipped']}", "≤ 5 min", ""))
    else:
        wall = f"{main['wall_seconds']:.0f} s" if main.get("wall_seconds") is not None else "—"
        extra = f" (exit {main['returncode']}: {main.get('error', '')})" if main.get("returncode") else ""
        lines.append(f"| the main job | | | `python -m jobs.sweep`: {wall}{extra} | | | ≤ 5 min | {verdict(main)} |")
    lines.append(auth_row(report.get("auth", skipped("auth", "not run"))))
    gpu = report["gpu"]
    if (line := unmeasured("GPU extras", gpu, prefix="")) is not None:
        lines.append(line)
    else:
        e = gpu["maxout_epoch_60000"]
        lines.append(f"| GPU: maxout epoch, {e['examples']:,} × 784 | maxout | 100 | Lightning: {seconds(e['measured']['seconds']['median'])}"
                     f" | plain loop: {seconds(e['reference']['seconds']['median'])} | {e['ratio']['median']:.2f}× | | |")
        for p in gpu["packing"]:
            lines.append(f"| GPU: {p['jobs_per_gpu']} jobs per GPU | | | {p['jobs']} jobs in {p['wall_seconds']:.1f} s "
                         f"({p['jobs_per_minute']:.1f}/min, at most {p['most_at_once']} at once) | | "
                         f"{p['speedup_vs_1']:.2f}× vs 1 per GPU | | |")
    return "\n".join(lines)


def auth_row(entry: dict[str, Any]) -> str:
    """The main job with Ray's token authentication and without, side by side."""
    title = "the main job, Ray token auth on / off"
    if (line := unmeasured(title, entry)) is not None:
        return line
    on, off = (f"{e['wall_seconds']:.0f} s" if e.get("wall_seconds") is not None else f"error: {e.get('error')}"
               for e in (entry["on"], entry["off"]))
    ratio = f"{entry['ratio']:.2f}×" if entry.get("ratio") is not None else "—"
    return row(title, "", "", f"on (default): {on}", f"off (`cluster.auth=false`): {off}", ratio, "",
               "pass" if entry["ok"] else "**FAIL**")


def scale_rows(report: dict[str, Any]) -> list[str]:
    """Planning per job and the transfer stage as seeds grow."""
    lines = []
    plan = report.get("planning", {})
    if (line := unmeasured("planning, main grid", plan, "≤ 3 ms/job", failed="**FAIL**")) is not None:
        lines.append(line)
    elif plan:
        small, large = plan["runs"]
        big = plan["big"]
        lines.append(row(f"planning: marginal cost per job, {small['jobs']:,} → {large['jobs']:,} jobs", "", "",
                         f"{plan['marginal_ms_per_job']:.2f} ms/job ({small['seconds']:.1f} s, {large['seconds']:.1f} s;"
                         f" {large['composed']} Hydra compositions)",
                         f"Hydra composing each job: {plan['reference_ms_per_job']:.1f} ms/job",
                         # no speedup when noise makes the marginal cost ≤ 0 (the larger plan was not slower)
                         f"{plan['speedup']:.0f}× faster" if plan["speedup"] is not None else "within noise",
                         "≤ 3 ms/job", verdict(plan)))
        lines.append(row(f"planning: `plan_only=true`, {big['jobs']:,} jobs", "", "",
                         f"{big['seconds']:.1f} s, peak memory {big['peak_bytes'] / 1e9:.2f} GB; "
                         f"plan.json {big['plan_bytes'] / 1e6:.0f} MB", "", "", "≤ 30 s, ≤ 1 GB", ""))
    scaling = report.get("transfer_scaling", {})
    if (line := unmeasured("transfer stage vs seeds", scaling, "≤ 1.25×", failed="**FAIL**")) is not None:
        lines.append(line)
    elif scaling:
        for pairs in ("seed_matched", "all"):
            runs = [r for r in scaling["runs"] if r["pairs"] == pairs]
            cells = "; ".join(f"S={r['seeds']}: {r['rows']:,} rows, {r['seconds']:.1f} s" for r in runs)
            judged = pairs == "seed_matched"
            lines.append(row(f"transfer stage, 2 models × S seeds, pairs={pairs}", "", "", cells,
                             "models per task: " + ", ".join(sorted({str(max(r['models_loaded'])) for r in runs})),
                             f"{scaling['per_seed_growth']:.2f}× time per seed, S={runs[0]['seeds']} → {runs[-1]['seeds']}"
                             if judged else "quadratic in seeds", "≤ 1.25×" if judged else "",
                             verdict(scaling) if judged else ""))
    return lines


def overhead_rows(report: dict[str, Any]) -> list[str]:
    """Per-job overhead of short jobs, and the Hydra launchers."""
    lines = []
    overhead = report.get("overhead", {})
    if (line := unmeasured("per-job overhead", overhead, "≥ 90% warm", failed="**FAIL**")) is not None:
        lines.append(line)
    elif overhead:
        for name in ("cold", "warm"):
            r = overhead[name]
            where = ", ".join(f"{part} {share:.0%}" for part, share in r["where"].items())
            lines.append(row(f"{overhead['title']} ({name})", "softmax", "100",
                             f"job {r['mean_job_seconds'] * 1e3:.0f} ms (training {r['mean_train_seconds'] * 1e3:.0f} ms)"
                             f", {overhead['slots']} slots", f"wall {r['wall_seconds']:.1f} s",
                             f"{r['efficiency_train_only']:.0%} training, {r['efficiency']:.0%} in jobs ({where})",
                             "≥ 90% warm" if name == "warm" else "", verdict(overhead) if name == "warm" else ""))
    launcher = report.get("launcher", {})
    if (line := unmeasured("Hydra multirun launchers", launcher, "≥ 1×", failed="**FAIL**")) is not None:
        lines.append(line)
    elif launcher:
        basic, ray = launcher["basic"], launcher["ray"]
        lines.append(row(f"Hydra multirun, {launcher['jobs']} one-epoch jobs", "", "",
                         f"hydra/launcher=ray: {ray['wall_seconds']:.1f} s", f"basic launcher: {basic['wall_seconds']:.1f} s",
                         f"{launcher['ratio']:.2f}× faster" if launcher.get("ratio") else "—", "≥ 1×", verdict(launcher)))
    return lines
