"""Calibration, measured: a ``[bench]`` config of likelihood-answered tasks run with the model's
own label scores (``calibration = "none"``) and calibrated ones, the prior read from content-free
inputs in each arm's own prompt (``"contextual"``, Zhao et al.'s recipe: the user's data
included) or in the task's non-personalized prompt (``"task"``); the same examples and prompts.
Then, per task and arm, the primary metric of each against the raw one, example by example (95%
bootstrap interval, randomization p), and how often each answers with its single most frequent
label (a prior the model carries, not the input).

    OMP_NUM_THREADS=2 .venv/bin/python bench/calibrate.py bench/configs/calibration.toml
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from p13n.benchmarks.variants import paired_rows, run_variant, save_rows


def most_frequent_share(run: dict[str, Any], task: str, arm: str) -> tuple[str, float]:
    """The label an arm answers most often, and the share of its answers it takes."""
    examples = next(t for t in run["tasks"] if t["task"] == task)["examples"]
    counts = Counter(e["outputs"][arm]["prediction"] for e in examples)
    label, count = counts.most_common(1)[0]
    return label, count / len(examples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--out", type=Path, default=Path("bench/out/calibration"))
    parser.add_argument("--split", choices=("train", "dev", "test"), help="default: the config's")
    args = parser.parse_args()
    console = Console()
    runs = {
        mode: run_variant(args.config, args.out / mode, calibration=mode, split=args.split)
        for mode in ("none", "contextual", "task")
    }
    rows = [
        {**row, "calibration": mode}
        for mode in ("contextual", "task")
        for row in paired_rows(runs["none"], runs[mode])
        if row["primary"]
    ]
    table = Table(title="Calibrated label answers against the model's own: same examples")
    columns = ("task", "arm", "calibration", "metric", "n", "raw", "calibrated",
               "calibrated - raw [95% CI]", "p", "most frequent (raw → calibrated)")  # fmt: skip
    for column in columns:
        left = column in ("task", "arm", "calibration", "metric")
        table.add_column(column, justify="left" if left else "right")
    for r in rows:
        raw_label, raw_share = most_frequent_share(runs["none"], r["task"], r["arm"])
        cal_label, cal_share = most_frequent_share(runs[r["calibration"]], r["task"], r["arm"])
        r.update(raw_mode=[raw_label, raw_share], calibrated_mode=[cal_label, cal_share])
        table.add_row(
            r["task"], r["arm"], r["calibration"], r["metric"], str(r["n"]),
            f"{r['reference']:.4f}", f"{r['candidate']:.4f}",
            f"{r['difference']:+.4f} [{r['low']:+.4f}, {r['high']:+.4f}]", f"{r['p']:.3f}",
            f"{raw_label} {raw_share:.0%} → {cal_label} {cal_share:.0%}",
        )  # fmt: skip
    console.print(table)
    save_rows(console, runs, rows, args.out / "calibration.json")


if __name__ == "__main__":
    main()
