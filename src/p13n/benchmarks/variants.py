"""One benchmark config run as two variants (two backends, two retrieval rules, ...) and
compared example by example: the same tasks, examples and arms, each per-example metric of the
candidate against the reference (mean difference, 95% bootstrap interval, randomization p, as
the runner compares arms). Answers come from and go to the runner's generation cache, so a
rerun only compares."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console

from p13n.benchmarks.config import load_bench_config
from p13n.benchmarks.runner import BenchRunner
from p13n.benchmarks.runner_report import write_outputs
from p13n.evaluate.stats import paired_decomposable


def run_variant(config: Path, out: Path, **overrides: Any) -> dict[str, Any]:
    """The config's run with ``overrides``, its tables written under ``out``: the results as
    written to JSON, plus how many answers were generated and how many reused."""
    settings = load_bench_config(config, out=out, **overrides)
    runner = BenchRunner(settings)
    try:
        result = runner.run()
    finally:
        runner.close()
    paths = write_outputs(result, settings.out)
    data: dict[str, Any] = json.loads(paths["json"].read_text())
    data["cache"] = {"generated": result.generated, "reused": result.reused}
    return data


def paired_rows(reference: dict[str, Any], candidate: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per task, arm and per-example metric: candidate minus reference."""
    rows = []
    for ref_task, cand_task in zip(reference["tasks"], candidate["tasks"], strict=True):
        if ref_task["task"] != cand_task["task"]:
            raise ValueError(f"not the same tasks: {ref_task['task']} and {cand_task['task']}")
        ids = [e["id"] for e in ref_task["examples"]]
        if ids != [e["id"] for e in cand_task["examples"]]:
            raise ValueError(f"{ref_task['task']}: not the same examples")
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
                pairs = list(zip(ref_task["examples"], cand_task["examples"], strict=True))
                rows.append(
                    {
                        "task": ref_task["task"],
                        "arm": arm,
                        "metric": metric,
                        "primary": metric == ref_task["primary"],
                        "higher_is_better": higher,
                        "n": len(ids),
                        "reference": sum(ref) / len(ref),
                        "candidate": sum(cand) / len(cand),
                        "difference": paired.difference,
                        "low": paired.low,
                        "high": paired.high,
                        "p": paired.p_value,
                        "same_answer": sum(
                            a["outputs"][arm]["prediction"] == b["outputs"][arm]["prediction"]
                            for a, b in pairs
                        ),
                    }
                )
    return rows


def save_rows(
    console: Console, runs: dict[str, dict[str, Any]], rows: list[dict[str, Any]], path: Path
) -> None:
    """Say how many answers each variant generated and reused, and write ``rows`` as JSON."""
    for name, data in runs.items():
        cache = data["cache"]
        console.print(f"{name}: {cache['generated']} generated, {cache['reused']} reused")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=2) + "\n")
    console.print(f"saved {path}")
