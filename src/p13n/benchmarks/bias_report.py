"""``p13n bench bias``'s report: the counterfactual and safety tables as markdown, a plot of
refusal rates and of how much answers change with the attribute, and ``results.json`` with every
answer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from p13n.benchmarks.bias import BiasResult, summary
from p13n.benchmarks.report import Report, save_figure, write_report


def results(result: BiasResult) -> dict[str, Any]:
    """What ``results.json`` holds: the config, the summary and every answer."""
    return {
        "config": json.loads(result.config.model_dump_json()),
        "summary": summary(result),
        "counterfactual_answers": {
            attribute: {
                value: {method: [a.text for a in answers] for method, answers in by.items()}
                for value, by in per_value.items()
            }
            for attribute, per_value in result.counterfactual.items()
        },
        "safety_answers": {
            method: [a.text for a in answers] for method, answers in result.safety.items()
        },
    }


def markdown(payload: dict[str, Any]) -> str:
    s = payload["summary"]
    users = ", ".join(s["users"])
    lines = [
        f"Users: {users}. {s['neutral_requests']} neutral requests per user and attribute value; "
        f"{s['harmful_requests']} harmful requests per user. Answers: {s['generated']} "
        f"generated, {s['reused']} reused from the cache.",
    ]
    for attribute, table in s["counterfactual"].items():
        first, second = table["values"]
        lines += [
            "",
            f"Counterfactual **{attribute}** = {first} vs {second} (the same user, data and "
            "requests; paired over user and request):",
            "",
            f"| method | pairs | prompt changed | answer changed | ROUGE-1 distance "
            f"| JSD | sentiment {first} / {second} (p) | refusal {first} / {second} (p) |",
            "|---|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for method, row in table["methods"].items():
            lines.append(
                f"| {method} | {row['pairs']} | {row['prompt_changed']:.0%} | {row['changed']:.0%} "
                f"| {row['rouge1_distance']:.3f} | {row['jsd_distance']:.3f} "
                f"| {row['sentiment'][first]:+.3f} / {row['sentiment'][second]:+.3f} "
                f"({_p(row['sentiment_p'])}) | {row['refusal'][first]:.0%} / "
                f"{row['refusal'][second]:.0%} ({_p(row['refusal_p'])}) |"
            )
    refused = s["refused_by_none"]
    lines += [
        "",
        f"Safety: the non-personalized model refuses {len(refused)} of the "
        f"{s['harmful_requests']} harmful requests.",
        "",
        "| method | answers | refusal rate (all harmful) | refusal rate (those none refuses) |",
        "|---|--:|--:|--:|",
    ]
    for method, row in s["safety"].items():
        on_refused = row["refusal_rate_on_refused"]
        lines.append(
            f"| {method} | {row['answers']} | {row['refusal_rate']:.0%} | "
            f"{'—' if on_refused is None else f'{on_refused:.0%}'} |"
        )
    return "\n".join(lines) + "\n"


def _p(value: float | None) -> str:
    if value is None:
        return "identical"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def plot(payload: dict[str, Any], path: Path) -> Path:
    """How much answers change with each attribute, and each method's refusal rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = payload["summary"]
    methods = list(s["safety"])
    figure, (left, right) = plt.subplots(1, 2, figsize=(max(8.0, 1.2 * len(methods) + 4), 4))
    attributes = list(s["counterfactual"])
    width = 0.8 / max(len(attributes), 1)
    positions = np.arange(len(methods))
    for j, attribute in enumerate(attributes):
        rows = s["counterfactual"][attribute]["methods"]
        left.bar(
            positions + (j - (len(attributes) - 1) / 2) * width,
            [rows[m]["rouge1_distance"] for m in methods],
            width,
            label=" vs ".join(str(v) for v in s["counterfactual"][attribute]["values"]),
        )
    left.set_xticks(positions, methods, rotation=30, ha="right")
    left.set_ylabel("ROUGE-1 distance between paired answers")
    left.set_title("How much the answer changes with the attribute")
    if attributes:
        left.legend()
    rates = [s["safety"][m]["refusal_rate"] for m in methods]
    right.bar_label(right.bar(positions, rates), labels=[f"{rate:.0%}" for rate in rates])
    right.set_xticks(positions, methods, rotation=30, ha="right")
    right.set_ylim(0, 1)
    right.set_ylabel("refusal rate on harmful requests")
    right.set_title("Safety by method")
    return save_figure(figure, path)


def write_outputs(result: BiasResult, out: Path) -> dict[str, Path]:
    """results.json, summary.md and bias.png."""
    payload = results(result)
    report = Report(
        results=payload,
        markdown=markdown(payload),
        plot_name="bias.png",
        plot=lambda path: plot(payload, path),
        json_newline=False,
    )
    return write_report(report, out)
