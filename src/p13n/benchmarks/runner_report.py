"""The benchmark runner's report: its tables (terminal and markdown), the plot of each method's
gain over the baseline, and the HTML page; written by ``p13n.benchmarks.report``."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from jinja2 import Environment, select_autoescape
from rich.table import Table

from p13n.benchmarks.config import AUTO, BASELINE
from p13n.benchmarks.report import Report, save_figure, write_report
from p13n.benchmarks.results import BenchResult, TaskResult


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _signed(value: float, digits: int = 4) -> str:
    return f"{value:+.{digits}f}"


def _rows(task: TaskResult, digits: int = 4) -> list[dict[str, Any]]:
    """One row per arm (and per method's dev-selected k): the figures every view shows."""
    primary = task.metrics.get(task.primary)
    others = [m for name, m in task.metrics.items() if name != task.primary]
    labels = [(arm, arm) for arm in task.arms]
    if task.policy is not None:  # the auto row names its choice
        labels = [
            (f"{AUTO} = {task.policy['choice']}" if arm == AUTO else arm, arm) for arm in task.arms
        ]
    labels += [
        (f"{method} (k={pick['k']} chosen on {pick['dev_split']})", pick["arm"])
        for method, pick in task.selected_k.items()
    ]
    rows = []
    for shown, arm in labels:
        row: dict[str, Any] = {"label": shown, "arm": arm}
        if primary is not None and not primary.unavailable:
            i = primary.arms[arm]
            row["primary"] = (
                f"{_fmt(i.value, digits)} [{_fmt(i.low, digits)}, {_fmt(i.high, digits)}]"
            )
            versus = primary.versus_baseline.get(arm)
            if versus is None:
                row["delta"] = row["p"] = row["wlt"] = "—"
            else:
                row["delta"] = (
                    f"{_signed(versus.difference, digits)} "
                    f"[{_signed(versus.low, digits)}, {_signed(versus.high, digits)}]"
                )
                row["p"] = f"{versus.p_value:.3f}"
                row["wlt"] = f"{versus.wins}/{versus.losses}/{versus.ties}"
        row["others"] = [
            "n/a" if m.unavailable else _fmt(m.arms[arm].value, digits) for m in others
        ]
        rows.append(row)
    return rows


def _headers(task: TaskResult) -> list[str]:
    primary = task.primary
    others = [name for name in task.metrics if name != primary]
    return [
        "method",
        f"{primary} [95% CI]",
        f"Δ {primary} vs {BASELINE} [95% CI]",
        "p",
        "W/L/T",
        *others,
    ]


def task_title(task: TaskResult, llm: dict[str, str]) -> str:
    return (
        f"{task.task} ({task.split}, n={len(task.examples)}, template {task.spec.template}, "
        f"{llm['model']})"
    )


def rich_table(task: TaskResult, llm: dict[str, str], *, compact: bool = False) -> Table:
    """The comparison for one task as a terminal table; ``compact`` (narrow terminals) leaves
    the intervals to summary.md and the report."""
    table = Table(title=task_title(task, llm), title_justify="left")
    rows = _rows(task, digits=3)
    headers = _headers(task)
    if compact:
        headers[1], headers[2] = task.primary, f"Δ vs {BASELINE}"
    widest = max(len(row["label"]) for row in rows)
    for n, header in enumerate(headers):
        if n == 0:  # the method names never wrap; narrow terminals wrap the figures instead
            table.add_column(header, justify="left", no_wrap=True, min_width=widest)
        else:
            table.add_column(header, justify="right")
    for row in rows:
        primary, delta = row.get("primary", "n/a"), row.get("delta", "n/a")
        if compact:
            primary, delta = primary.split(" [")[0], delta.split(" [")[0]
        table.add_row(
            row["label"], primary, delta, row.get("p", "n/a"), row.get("wlt", "n/a"), *row["others"]
        )
    return table


def markdown(result: BenchResult) -> str:
    """Every task's table in markdown, with the notes a reader needs to interpret them."""
    lines = [f"# Benchmark `{result.config.name}`", ""]
    lines.append(
        f"Model: {result.llm['backend']} / {result.llm['model']}; split `{result.config.split}`; "
        f"seed {result.config.seed}; generations: {result.generated} new, "
        f"{result.reused} reused from the cache."
    )
    lines.append(
        "Intervals are 95% bootstrap percentile intervals; Δ is the paired difference to the "
        "non-personalized baseline on the same examples, p from a paired approximate "
        "randomization test; W/L/T counts examples where the method scored better / worse / "
        "the same as the baseline (for MAE/RMSE lower is better)."
    )
    config = result.config
    if not config.require_match:
        lines.append("Retrieval quotes the top k whatever they share with the input (LaMP's).")
    if config.calibration != "none":
        lines.append(
            f"Label answers are calibrated ({config.calibration}: the prior read from "
            "content-free inputs), the baseline's included."
        )
    if config.fusion_weight > 0:
        lines.append(
            f"The personalized arms' label answers are fused with the user's own label history "
            f"(weight {config.fusion_weight:g}); the baseline's are not."
        )
    for task in result.tasks:
        lines += ["", f"## {task_title(task, result.llm)}", ""]
        headers = _headers(task)
        lines.append("| " + " | ".join(headers) + " |")
        lines.append("|" + "|".join([":--"] + ["--:"] * (len(headers) - 1)) + "|")
        for row in _rows(task):
            cells = [
                row["label"],
                row.get("primary", "n/a"),
                row.get("delta", "n/a"),
                row.get("p", "n/a"),
                row.get("wlt", "n/a"),
                *row["others"],
            ]
            lines.append("| " + " | ".join(cells) + " |")
        unavailable = [m for m in task.metrics.values() if m.unavailable]
        for metric in unavailable:
            lines.append(f"\n{metric.name} unavailable: {metric.unavailable}")
        if task.swap:
            lines += ["", "Profile swap (own profile vs another user's, scored on own gold):", ""]
            lines.append("| method | metric | n | own better | tie | other better | p |")
            lines.append("|:--|:--|--:|--:|--:|--:|--:|")
            for arm, swap in task.swap.items():
                lines.append(
                    f"| {arm} | {swap['metric']} | {swap['n']} | {swap['wins']} | "
                    f"{swap['ties']} | {swap['losses']} | {swap.get('p_value', float('nan')):.3f} |"
                )
        if task.policy is not None:
            lines += ["", *policy_table(task.policy)]
            if shown := side_by_side(task):
                lines += ["", *shown]
        if task.training:
            lines += ["", "Training cost of the learned-user methods (2 CPU threads unless noted):"]
            lines += ["", *training_table(task.training)]
        if task.skipped_profile_items:
            lines.append(
                f"\n{task.skipped_profile_items} profile items had no text and were left out."
            )
    return "\n".join(lines) + "\n"


def side_by_side(task: TaskResult, arm: str = AUTO, *, chars: int = 240) -> list[str]:
    """Markdown: one example where ``arm`` beat the baseline on the primary metric, the two
    answers beside the user's own, and the run's paired difference; empty when it never won."""
    summary = task.metrics.get(task.primary)
    if summary is None or summary.unavailable or arm not in task.arms:
        return []
    sign = 1.0 if summary.higher_is_better else -1.0
    metric = summary.name
    wins = [
        r
        for r in task.examples
        if metric in r.outputs[arm].scores and metric in r.outputs[BASELINE].scores
        and sign * (r.outputs[arm].scores[metric] - r.outputs[BASELINE].scores[metric]) > 0
    ]  # fmt: skip
    if not wins:
        return []
    record = wins[0]
    shown = f"{AUTO} = {task.policy['choice']}" if arm == AUTO and task.policy else arm
    text = " ".join(record.input.split())
    lines = [
        f"One example where `{shown}` beat the non-personalized prompt ({len(wins)} of "
        f"{len(task.examples)} did), user `{record.user_id or record.id}`:",
        "",
        f"- input: {text[:chars]}{'…' if len(text) > chars else ''}",
        f"- the user's own answer: {record.reference}",
    ]
    for label, name in ((BASELINE, BASELINE), (shown, arm)):
        output = record.outputs[name]
        lines.append(f"- {label}: {output.prediction} ({metric} {output.scores[metric]:.4g})")
    versus = summary.versus_baseline.get(arm)
    if versus is not None:
        lines.append(
            f"- over all {len(task.examples)} examples: {metric} "
            f"{summary.arms[BASELINE].value:.4g} → {summary.arms[arm].value:.4g} "
            f"(Δ {_signed(versus.difference)}, p {versus.p_value:.3f})"
        )
    return lines


def policy_table(policy: dict[str, Any]) -> list[str]:
    """Markdown: what ``auto`` chose on dev, and every candidate's dev evidence."""
    evidence = policy["evidence"]
    fallback = policy.get("fallback")
    backup = (
        f" Users without a {policy['adapter']} adapter get the fallback "
        f"**{fallback['choice']}** (the same rule among the candidates without one)."
        if fallback
        else ""
    )
    lines = [
        f"`auto` chose **{policy['choice']}** on {evidence['split']} (n={evidence['examples']}, "
        f"{evidence['metric']}; best: {evidence['best']}; rule: {evidence['rule']}).{backup} "
        "Candidates, simplest first:",
        "",
        f"| candidate | dev {evidence['metric']} | gap to best | SE of the gap | within 1 SE |",
        "|:--|--:|--:|--:|:--|",
    ]
    for c in evidence["candidates"]:
        within = c["gap"] <= c["standard_error"] + 1e-12
        mark = "chosen" if c["label"] == policy["choice"] else ("yes" if within else "")
        if fallback and c["label"] == fallback["choice"]:
            mark = f"{mark}, fallback" if mark else "fallback"
        lines.append(
            f"| {c['label']} | {c['mean']:.4f} | {c['gap']:.4f} | {c['standard_error']:.4f} "
            f"| {mark} |"
        )
    return lines


def training_table(training: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown rows: per learned method, adapters (or refined instructions, or the fine-tuned
    model), seconds, examples, size, swap time, and the LLM calls refining made."""
    lines = [
        "| method | adapters | trained now | train s (total) | train s (mean) | examples (mean) "
        "| size MB (mean) | swap ms (median) | LLM calls (mean) |",
        "|:--|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name, cost in training.items():
        size = cost.get("size_bytes_mean")
        swap = cost.get("swap_ms_median")
        untrained = cost.get("untrained", 0)
        adapters = f"{cost['adapters']}" + (f" ({untrained} too little data)" if untrained else "")
        lines.append(
            f"| {name} | {adapters} | {cost['trained_now']} | "
            f"{cost['train_seconds_total']} | {cost['train_seconds_mean']} | "
            f"{cost['examples_mean']} | {'n/a' if size is None else f'{size / 1e6:.4g}'} | "
            f"{'n/a' if swap is None else swap} | {cost.get('llm_calls_mean') or '—'} |"
        )
    return lines


def plot_gains(result: BenchResult, path: Path) -> Path:
    """One panel per task: each method's paired gain over the baseline, with its 95% interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = result.tasks
    figure, axes = plt.subplots(
        1, len(tasks), figsize=(max(5.0, 4.2 * len(tasks)), 3.6), squeeze=False
    )
    for axis, task in zip(axes[0], tasks, strict=True):
        summary = task.metrics.get(task.primary)
        if summary is None or summary.unavailable:
            axis.set_title(f"{task.task}: {task.primary} unavailable")
            continue
        arms = list(summary.versus_baseline)
        diffs = [summary.versus_baseline[a].difference for a in arms]
        low = [d - summary.versus_baseline[a].low for a, d in zip(arms, diffs, strict=True)]
        high = [summary.versus_baseline[a].high - d for a, d in zip(arms, diffs, strict=True)]
        better = [(d > 0) == summary.higher_is_better for d in diffs]
        axis.barh(
            arms,
            diffs,
            xerr=[low, high],
            color=["#2a9d8f" if b else "#e76f51" for b in better],
            capsize=3,
        )
        axis.axvline(0, color="black", linewidth=0.8)
        axis.invert_yaxis()
        direction = "higher" if summary.higher_is_better else "lower"
        axis.set_title(f"{task.task} (n={len(task.examples)})", fontsize=10)
        axis.set_xlabel(f"Δ {task.primary} vs {BASELINE} ({direction} is better)", fontsize=8)
        axis.tick_params(labelsize=8)
    figure.suptitle(f"Gain over the non-personalized prompt — {result.llm['model']}", fontsize=10)
    return save_figure(figure, path)


_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>p13n benchmark {{ name }}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;max-width:75rem;color:#222}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}
th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}
th:first-child,td:first-child{text-align:left}
.note{color:#555;font-size:.9rem} details{margin:.5rem 0} pre{white-space:pre-wrap}
</style></head><body>
<h1>p13n benchmark <code>{{ name }}</code></h1>
<p class="note">{{ model }} · split {{ split }} · seed {{ seed }} ·
{{ generated }} generations new, {{ reused }} reused. Intervals: 95% bootstrap.
Δ: paired difference to the non-personalized baseline; p: paired approximate randomization.</p>
<img alt="gain per method" src="data:image/png;base64,{{ plot }}" style="max-width:100%">
{% for task in tasks %}
<h2>{{ task.title }}</h2>
<table><tr>{% for h in task.headers %}<th>{{ h }}</th>{% endfor %}</tr>
{% for row in task.rows %}<tr><td>{{ row.label }}</td><td>{{ row.primary }}</td>
<td>{{ row.delta }}</td><td>{{ row.p }}</td><td>{{ row.wlt }}</td>
{% for v in row.others %}<td>{{ v }}</td>{% endfor %}</tr>{% endfor %}
</table>
{% for name, why in task.unavailable %}
<p class="note">{{ name }} unavailable: {{ why }}</p>{% endfor %}
<details><summary>First {{ task.samples|length }} examples</summary>
{% for ex in task.samples %}<h4>{{ ex.id }}</h4><p><b>gold:</b> {{ ex.reference }}</p>
<table>{% for arm, out in ex.outputs.items() %}<tr><td>{{ arm }}</td>
<td style="text-align:left">{{ out.prediction }}</td></tr>{% endfor %}</table>{% endfor %}
</details>
{% endfor %}
</body></html>
"""


def html(result: BenchResult, plot: Path, samples: int = 10) -> str:
    """A self-contained HTML report (plot inlined) for the dashboard to show."""
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    tasks = [
        {
            "title": task_title(task, result.llm),
            "headers": _headers(task),
            "rows": [
                {**row, **{k: row.get(k, "n/a") for k in ("primary", "delta", "p", "wlt")}}
                for row in _rows(task)
            ],
            "unavailable": [
                (m.name, m.unavailable) for m in task.metrics.values() if m.unavailable
            ],
            "samples": task.examples[:samples],
        }
        for task in result.tasks
    ]
    return env.from_string(_HTML).render(
        name=result.config.name,
        model=f"{result.llm['backend']} / {result.llm['model']}",
        split=result.config.split,
        seed=result.config.seed,
        generated=result.generated,
        reused=result.reused,
        plot=base64.b64encode(plot.read_bytes()).decode("ascii"),
        tasks=tasks,
    )


def write_outputs(result: BenchResult, out: Path) -> dict[str, Path]:
    """``results.json``, ``summary.md``, ``gain.png`` and ``report.html`` under ``out``."""
    report = Report(
        results=result.to_dict(),
        markdown=markdown(result),
        plot_name="gain.png",
        plot=lambda path: plot_gains(result, path),
        html=lambda plot: html(result, plot),
    )
    return write_report(report, out)
