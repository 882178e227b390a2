"""Retrieval that abstains, measured: a ``[bench]`` config answered with the top k quoted
whatever they share with the input (LaMP's protocol, ``require_match = false``) and with only
the items sharing a word with it (``require_match = true``, p13n's default), the same examples;
then, per task and retrieval arm, how often the matched rule quoted nothing (the
non-personalized prompt), how many items it quoted, and its primary metric against the
protocol's, example by example (difference, 95% bootstrap interval, randomization p).

    OMP_NUM_THREADS=2 .venv/bin/python bench/abstain.py bench/configs/abstain.toml
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from p13n.benchmarks.variants import paired_rows, run_variant, save_rows

BASELINE = "none"


def quoting(run: dict[str, Any], task: str, arm: str) -> tuple[float, float]:
    """(share of examples whose prompt quoted nothing, mean items quoted) for one arm."""
    examples = next(t for t in run["tasks"] if t["task"] == task)["examples"]
    items = [e["outputs"][arm]["items_in_prompt"] for e in examples]
    return sum(n == 0 for n in items) / len(items), sum(items) / len(items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--out", type=Path, default=Path("bench/out/abstain"))
    parser.add_argument("--split", choices=("train", "dev", "test"), help="default: the config's")
    args = parser.parse_args()
    console = Console()
    runs = {
        "top k": run_variant(
            args.config, args.out / "top-k", require_match=False, split=args.split
        ),
        "matched": run_variant(
            args.config, args.out / "matched", require_match=True, split=args.split
        ),
    }
    rows = [r for r in paired_rows(runs["top k"], runs["matched"]) if r["primary"]]
    baseline = {r["task"]: r["reference"] for r in rows if r["arm"] == BASELINE}
    table = Table(title="Quoting only matched items against the top k: same examples")
    columns = ("task", "arm", "metric", "n", "none", "top k", "matched", "matched - top k [95% CI]",
               "p", "quoted nothing", "items (top k → matched)")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column in ("task", "arm", "metric") else "right")
    for r in rows:
        if r["arm"] == BASELINE:
            continue
        empty, matched_items = quoting(runs["matched"], r["task"], r["arm"])
        _, top_items = quoting(runs["top k"], r["task"], r["arm"])
        r.update(quoted_nothing=empty, items_top_k=top_items, items_matched=matched_items)
        table.add_row(
            r["task"], r["arm"], r["metric"], str(r["n"]), f"{baseline[r['task']]:.4f}",
            f"{r['reference']:.4f}", f"{r['candidate']:.4f}",
            f"{r['difference']:+.4f} [{r['low']:+.4f}, {r['high']:+.4f}]", f"{r['p']:.3f}",
            f"{empty:.0%}", f"{top_items:.2f} → {matched_items:.2f}",
        )  # fmt: skip
    console.print(table)
    save_rows(console, runs, rows, args.out / "abstain.json")


if __name__ == "__main__":
    main()
