"""The learned policy's acceptance summary, from the results of ``p13n bench run`` with method
``auto`` (bench/configs/policy.toml and policy_labels.toml): per task, what ``auto`` chose on
dev, its test score against none with the paired test, the relative gain, the profile-swap test
on ``auto``; the mean relative gain over the tasks; and what each arm costs while decoding
(forward passes per token, tokens/s, prompt tokens), measured in the same runs.

    .venv/bin/python bench/policy_report.py bench/out/policy bench/out/policy_labels
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

BASELINE, AUTO = "none", "auto"


def relative_gain(auto: float, none: float, higher_is_better: bool) -> float | None:
    """(auto - none) / none, sign-flipped for an error metric; None when none scored 0."""
    if none == 0:
        return None
    gain = (auto - none) / abs(none)
    return gain if higher_is_better else -gain


def forward_passes(arm: str) -> int:
    """Model forward passes per decoded token: context steering reads a second prompt, CoPe
    runs the base model beside the user's adapter; a steering vector adds no pass."""
    return 2 if arm.startswith(("cos ", "cope ")) else 1


def task_rows(task: dict[str, Any]) -> dict[str, Any]:
    primary = task["primary"]
    metric = task["metrics"][primary]
    arms, versus = metric["arms"], metric["versus_baseline"]
    higher = bool(metric["higher_is_better"])
    auto, none = arms[AUTO]["value"], arms[BASELINE]["value"]
    swap = task["swap"].get(AUTO)
    policy = task["policy"]
    return {
        "task": task["task"],
        "metric": primary,
        "choice": policy["choice"],
        "dev_best": policy["evidence"]["best"],
        "dev_n": policy["evidence"]["examples"],
        "n": task["n"],
        "none": none,
        "auto": auto,
        "delta": versus[AUTO]["difference"],
        "p": versus[AUTO]["p_value"],
        "wlt": f"{versus[AUTO]['wins']}/{versus[AUTO]['losses']}/{versus[AUTO]['ties']}",
        "gain": relative_gain(auto, none, higher),
        "best_test": max(
            (a for a in arms if a != AUTO),
            key=lambda a: arms[a]["value"] if higher else -arms[a]["value"],
        ),
        "swap": swap,
        "generated": task["spec"]["output_kind"] == "text",
    }


def costs(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per arm over every task: passes per token, decoding tokens/s, mean prompt tokens."""
    by_arm: dict[str, dict[str, list[float]]] = {}
    for task in tasks:
        for example in task["examples"]:
            for arm, output in example["outputs"].items():
                if output["completion_tokens"] == 0 or output["generate_ms"] <= 0:
                    continue  # answers chosen by likelihood decode nothing
                entry = by_arm.setdefault(arm, {"tokens": [], "ms": [], "prompt": []})
                entry["tokens"].append(output["completion_tokens"])
                entry["ms"].append(output["generate_ms"])
                entry["prompt"].append(output["prompt_tokens"])
    rows = []
    for arm, entry in by_arm.items():
        seconds = sum(entry["ms"]) / 1000
        rows.append(
            {
                "arm": arm,
                "passes": forward_passes(arm),
                "tokens_per_s": sum(entry["tokens"]) / seconds if seconds else None,
                "prompt_tokens": statistics.fmean(entry["prompt"]),
                "answers": len(entry["ms"]),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="output folders (results.json)")
    args = parser.parse_args()
    tasks = []
    for run in args.runs:
        tasks += json.loads((run / "results.json").read_text())["tasks"]
    rows = [task_rows(t) for t in tasks if t.get("policy")]
    console = Console(width=220)
    table = Table(title="auto (chosen on dev) against none on test", title_justify="left")
    for column in (
        "task", "metric", "auto chose", "dev best", "none", "auto", "Δ", "p", "W/L/T",
        "rel. gain", "best arm on test", "swap own/tie/other (p)",
    ):  # fmt: skip
        table.add_column(column, justify="left" if column in ("task", "auto chose") else "right")
    for row in rows:
        swap = row["swap"]
        swapped = (
            f"{swap['wins']}/{swap['ties']}/{swap['losses']} ({swap['p_value']:.3f})"
            if swap
            else "-"
        )
        table.add_row(
            row["task"], row["metric"], row["choice"], row["dev_best"], f"{row['none']:.4f}",
            f"{row['auto']:.4f}", f"{row['delta']:+.4f}", f"{row['p']:.3f}", row["wlt"],
            "n/a" if row["gain"] is None else f"{row['gain']:+.1%}", row["best_test"], swapped,
        )  # fmt: skip
    console.print(table)
    gains = [row["gain"] for row in rows if row["gain"] is not None]
    if gains:
        console.print(
            f"mean relative gain of auto over none: {statistics.fmean(gains):+.1%} over "
            f"{len(gains)} tasks (of {len(rows)}; a task where none scored 0 has none); "
            f"median {statistics.median(gains):+.1%}"
        )
    generated = [row["gain"] for row in rows if row["gain"] is not None and row["generated"]]
    if generated:
        console.print(
            f"on the {len(generated)} generation tasks alone: "
            f"mean {statistics.fmean(generated):+.1%}"
        )
    own = sum(1 for row in rows if row["swap"] and row["swap"]["p_value"] < 0.05
              and row["swap"]["wins"] > row["swap"]["losses"])  # fmt: skip
    console.print(f"own profile beats a swapped one significantly on {own} of {len(rows)} tasks")
    cost = Table(title="what each arm costs while decoding (onnx int4, 2 threads)")
    for column in (
        "arm", "passes per token", "tokens/s (prompt reading included)", "prompt tokens (mean)",
        "answers timed",
    ):  # fmt: skip
        cost.add_column(column, justify="left" if column == "arm" else "right")
    for row in costs(tasks):
        speed = row["tokens_per_s"]
        cost.add_row(
            row["arm"], str(row["passes"]), "n/a" if speed is None else f"{speed:.1f}",
            f"{row['prompt_tokens']:.0f}", str(row["answers"]),
        )  # fmt: skip
    console.print(cost)


if __name__ == "__main__":
    main()
