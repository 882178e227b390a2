"""Quality parity of two backends on the same benchmark: every task and arm of a ``[bench]``
config answered by torch float32 (``embedded``) and by ``onnx`` int4, the same examples and
prompts, then each per-example metric compared pairwise (onnx minus torch: mean difference, 95%
bootstrap interval, randomization p, as the runner compares arms). Answers come from and go to
the runner's generation cache, so a rerun only compares.

    OMP_NUM_THREADS=1 .venv/bin/python bench/backend_parity.py bench/configs/backend_parity.toml
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from p13n.benchmarks.variants import paired_rows, run_variant, save_rows
from p13n.llm import LLMConfig

BACKENDS = {
    "torch float32": LLMConfig(backend="embedded"),
    "onnx int4": LLMConfig(backend="onnx", precision="int4"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--out", type=Path, default=Path("bench/out/backend_parity"))
    parser.add_argument("--all-metrics", action="store_true", help="not only each primary")
    args = parser.parse_args()
    console = Console()
    results = {
        name: run_variant(args.config, args.out / name.replace(" ", "-"), llm=llm)
        for name, llm in BACKENDS.items()
    }
    rows = paired_rows(results["torch float32"], results["onnx int4"])
    for row in rows:
        row["torch"], row["onnx"] = row.pop("reference"), row.pop("candidate")
    shown = rows if args.all_metrics else [r for r in rows if r["primary"]]
    table = Table(title="onnx int4 against torch float32: same examples, same prompts")
    for column in ("task", "arm", "metric", "n", "torch", "onnx", "onnx - torch [95% CI]", "p",
                   "same answer"):  # fmt: skip
        table.add_column(column, justify="left" if column in ("task", "arm", "metric") else "right")
    for r in shown:
        table.add_row(
            r["task"], r["arm"], r["metric"], str(r["n"]), f"{r['torch']:.4f}",
            f"{r['onnx']:.4f}", f"{r['difference']:+.4f} [{r['low']:+.4f}, {r['high']:+.4f}]",
            f"{r['p']:.3f}", f"{r['same_answer']}/{r['n']}",
        )  # fmt: skip
    console.print(table)
    save_rows(console, results, rows, args.out / "parity.json")


if __name__ == "__main__":
    main()
