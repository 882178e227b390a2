"""Fusion with the user's own label history, its weight chosen on dev: a ``[bench]`` config of
likelihood-answered tasks run on the dev split at each ``--weights`` value (answers come from the
generation cache: only the fusion differs), the weight chosen per task and arm by the
one-standard-error rule toward 0 (the smallest weight whose dev mean is within one standard
error of the best), then the test split answered with the chosen weight and compared example by
example with weight 0 (the same arm, calibrated the same way) and with the baseline.

    OMP_NUM_THREADS=2 .venv/bin/python bench/fusion.py bench/configs/calibration.toml \\
        --tasks review-rating --calibration task
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from p13n.benchmarks.variants import paired_rows, run_variant, save_rows

BASELINE = "none"


def arm_scores(run: dict[str, Any], task: str, arm: str) -> tuple[list[float], bool]:
    """The arm's per-example primary metric on ``task``, and whether higher is better."""
    found = next(t for t in run["tasks"] if t["task"] == task)
    primary = found["primary"]
    higher = bool(found["metrics"][primary]["higher_is_better"])
    return [e["outputs"][arm]["scores"][primary] for e in found["examples"]], higher


def one_standard_error(means: dict[float, tuple[float, float]], higher: bool) -> float:
    """The smallest weight whose mean is within one standard error of the best one's."""
    sign = 1 if higher else -1
    best = max(means, key=lambda w: sign * means[w][0])
    mean, error = means[best]
    return min(w for w, (m, _) in means.items() if sign * (mean - m) <= error)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--tasks", required=True, help="comma-separated")
    parser.add_argument("--calibration", choices=("none", "contextual", "task"), default="none")
    parser.add_argument("--weights", default="0,0.5,1,2,4,inf", help="inf: the user's habit")
    parser.add_argument("--out", type=Path, default=Path("bench/out/fusion"))
    args = parser.parse_args()
    console = Console()
    tasks = args.tasks.split(",")
    weights = sorted({float(w) for w in args.weights.split(",")} | {0.0})
    common = {"tasks": tasks, "calibration": args.calibration}
    dev = {
        w: run_variant(
            args.config, args.out / f"dev-w{w:g}", split="dev", fusion_weight=w, **common
        )
        for w in weights
    }
    arms = [a for a in dev[0.0]["tasks"][0]["arms"] if a != BASELINE]
    chosen: dict[tuple[str, str], float] = {}
    for task in tasks:
        for arm in arms:
            means = {}
            for w, run in dev.items():
                values, higher = arm_scores(run, task, arm)
                error = statistics.stdev(values) / math.sqrt(len(values))
                means[w] = (statistics.fmean(values), error)
            chosen[task, arm] = one_standard_error(means, higher)
            console.print(
                f"{task} {arm}: dev means by weight "
                + ", ".join(f"{w:g}: {m:.3f}±{e:.3f}" for w, (m, e) in means.items())
                + f" → weight {chosen[task, arm]:g}",
                highlight=False,
            )
    rows = []
    test_zero = run_variant(args.config, args.out / "test-w0", fusion_weight=0.0, **common)
    for (task, arm), w in chosen.items():
        test = run_variant(
            args.config, args.out / f"test-w{w:g}", fusion_weight=w, **{**common, "tasks": [task]}
        )
        zero = {**test_zero, "tasks": [t for t in test_zero["tasks"] if t["task"] == task]}
        for row in paired_rows(zero, test):
            if row["primary"] and row["arm"] == arm:
                none, _ = arm_scores(test, task, BASELINE)
                rows.append({**row, "weight": w, "none": statistics.fmean(none)})
    table = Table(title=f"Fusion with the user's own labels (calibration: {args.calibration})")
    columns = ("task", "arm", "metric", "n", "weight (dev)", "none", "weight 0", "fused",
               "fused - weight 0 [95% CI]", "p")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column in ("task", "arm", "metric") else "right")
    for r in rows:
        table.add_row(
            r["task"], r["arm"], r["metric"], str(r["n"]), f"{r['weight']:g}", f"{r['none']:.4f}",
            f"{r['reference']:.4f}", f"{r['candidate']:.4f}",
            f"{r['difference']:+.4f} [{r['low']:+.4f}, {r['high']:+.4f}]", f"{r['p']:.3f}",
        )  # fmt: skip
    console.print(table)
    save_rows(console, {**{f"dev w={w:g}": r for w, r in dev.items()}, "test w=0": test_zero},
              rows, args.out / f"fusion-{'-'.join(tasks)}.json")  # fmt: skip


if __name__ == "__main__":
    main()
