"""Quality parity of two backends on the same benchmark: every task and arm of a ``[bench]``
config answered by torch float32 (``embedded``) and by ``onnx`` int4, the same examples and
prompts, then each per-example metric compared pairwise (onnx minus torch: mean difference, 95%
bootstrap interval, randomization p, as the runner compares arms). Answers come from and go to
the runner's generation cache, so a rerun only compares.

    OMP_NUM_THREADS=1 .venv/bin/python bench/backend_parity.py bench/configs/backend_parity.toml
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from p13n.benchmarks.config import load_bench_config
from p13n.benchmarks.runner import BenchRunner
from p13n.benchmarks.runner_report import write_outputs
from p13n.evaluate.stats import paired_decomposable
from p13n.llm import LLMConfig

BACKENDS = {
    "torch float32": LLMConfig(backend="embedded"),
    "onnx int4": LLMConfig(backend="onnx", precision="int4"),
}


def run(config: Path, name: str, llm: LLMConfig, out: Path) -> dict[str, Any]:
    folder = out / name.replace(" ", "-")
    settings = load_bench_config(config, llm=llm, out=folder)
    runner = BenchRunner(settings)
    try:
        result = runner.run()
    finally:
        runner.close()
    paths = write_outputs(result, settings.out)
    data: dict[str, Any] = json.loads(paths["json"].read_text())
    data["cache"] = {"generated": result.generated, "reused": result.reused}
    return data


def compare(reference: dict[str, Any], candidate: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per task, arm and per-example metric: candidate minus reference."""
    rows = []
    for ref_task, cand_task in zip(reference["tasks"], candidate["tasks"], strict=True):
        assert ref_task["task"] == cand_task["task"]
        ids = [e["id"] for e in ref_task["examples"]]
        assert ids == [e["id"] for e in cand_task["examples"]], "not the same examples"
        for arm in ref_task["arms"]:
            for metric, summary in ref_task["metrics"].items():
                ref = [e["outputs"][arm]["scores"].get(metric) for e in ref_task["examples"]]
                cand = [e["outputs"][arm]["scores"].get(metric) for e in cand_task["examples"]]
                if any(v is None for v in ref + cand):
                    continue  # a corpus-level metric: no per-example scores
                higher = bool(summary["higher_is_better"])
                paired = paired_decomposable(
                    cand, ref, higher_is_better=higher, resamples=10_000, seed=0
                )
                same = sum(
                    a["outputs"][arm]["prediction"] == b["outputs"][arm]["prediction"]
                    for a, b in zip(ref_task["examples"], cand_task["examples"], strict=True)
                )
                rows.append(
                    {
                        "task": ref_task["task"],
                        "arm": arm,
                        "metric": metric,
                        "primary": metric == ref_task["primary"],
                        "higher_is_better": higher,
                        "n": len(ids),
                        "torch": sum(ref) / len(ref),
                        "onnx": sum(cand) / len(cand),
                        "difference": paired.difference,
                        "low": paired.low,
                        "high": paired.high,
                        "p": paired.p_value,
                        "same_answer": same,
                    }
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--out", type=Path, default=Path("bench/out/backend_parity"))
    parser.add_argument("--all-metrics", action="store_true", help="not only each primary")
    args = parser.parse_args()
    console = Console()
    results = {name: run(args.config, name, llm, args.out) for name, llm in BACKENDS.items()}
    rows = compare(results["torch float32"], results["onnx int4"])
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
    for name, data in results.items():
        cache = data["cache"]
        console.print(f"{name}: {cache['generated']} generated, {cache['reused']} reused")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "parity.json").write_text(json.dumps(rows, indent=2) + "\n")
    console.print(f"saved {args.out / 'parity.json'}")


if __name__ == "__main__":
    main()
