"""Decoding by the learned user, from two runs of ``p13n bench run`` (bench/configs/steer_dev.toml
and steer.toml): for each decoding-time method, the strength that scored best on dev, then every
arm on test against none with the paired test (the dev-chosen strengths marked), and what each
arm costs: forward passes per token, tokens/s while decoding, training seconds and bytes per
user, all measured in the same runs.

    .venv/bin/python bench/steer_report.py bench/out/steer-dev bench/out/steer
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from policy_report import costs

STRENGTHS = ("β=", "α=", "λ=")


def method_of(arm: str) -> str:
    """The arm's method: its label without the strength."""
    return arm.split(" ")[0] if any(mark in arm for mark in STRENGTHS) else arm


def dev_choices(task: dict[str, Any]) -> dict[str, str]:
    """Per decoding-time method, its arm with the best dev score (ties: the first listed)."""
    metric = task["metrics"][task["primary"]]
    sign = 1 if metric["higher_is_better"] else -1
    best: dict[str, str] = {}
    for arm in task["arms"]:
        if not any(mark in arm for mark in STRENGTHS):
            continue
        method = method_of(arm)
        value = sign * metric["arms"][arm]["value"]
        if method not in best or value > sign * metric["arms"][best[method]]["value"]:
            best[method] = arm
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dev", type=Path, help="the dev run's output folder")
    parser.add_argument("test", type=Path, help="the test run's output folder")
    args = parser.parse_args()
    (dev,) = json.loads((args.dev / "results.json").read_text())["tasks"]
    (test,) = json.loads((args.test / "results.json").read_text())["tasks"]
    chosen = dev_choices(dev)
    console = Console(width=200)
    primary = test["primary"]
    table = Table(
        title=f"{test['task']}, {primary}: dev (n={dev['n']}) and test (n={test['n']}), "
        "paired against none",
        title_justify="left",
    )
    for column in ("arm", "dev", "dev Δ", "test", "test Δ [95% CI]", "p", "W/L/T", "chosen on dev"):
        table.add_column(column, justify="left" if column == "arm" else "right")
    dev_metric, test_metric = dev["metrics"][primary], test["metrics"][primary]
    for arm in test["arms"]:
        d, t = dev_metric["arms"].get(arm), test_metric["arms"][arm]
        dv, tv = dev_metric["versus_baseline"].get(arm), test_metric["versus_baseline"].get(arm)
        table.add_row(
            arm,
            "-" if d is None else f"{d['value']:.4f}",
            "-" if dv is None else f"{dv['difference']:+.4f}",
            f"{t['value']:.4f}",
            "-" if tv is None else f"{tv['difference']:+.4f} [{tv['low']:+.4f}, {tv['high']:+.4f}]",
            "-" if tv is None else f"{tv['p_value']:.3f}",
            "-" if tv is None else f"{tv['wins']}/{tv['losses']}/{tv['ties']}",
            "yes" if arm in chosen.values() else "",
        )
    console.print(table)
    cost = Table(title="what each arm costs (torch float32, 2 threads)", title_justify="left")
    for column in ("arm", "passes per token", "tokens/s", "answers timed"):
        cost.add_column(column, justify="left" if column == "arm" else "right")
    for row in costs([dev, test]):
        speed = row["tokens_per_s"]
        cost.add_row(
            row["arm"], str(row["passes"]), "n/a" if speed is None else f"{speed:.1f}",
            str(row["answers"]),
        )  # fmt: skip
    console.print(cost)
    training = Table(title="training per user (both runs)", title_justify="left")
    for column in ("method", "trained now", "seconds per user", "bytes per user", "examples"):
        training.add_column(column, justify="left" if column == "method" else "right")
    for run in (dev, test):
        for method, spent in run["training"].items():
            training.add_row(
                f"{method} ({run['split']})", str(spent["trained_now"]),
                f"{spent['train_seconds_mean']:.1f}", f"{spent['size_bytes_mean']:,.0f}",
                f"{spent['examples_mean']:.1f}",
            )  # fmt: skip
    console.print(training)


if __name__ == "__main__":
    main()
