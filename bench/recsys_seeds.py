"""Pool several `p13n bench recsys` runs that differ only in --seed (which users are cut to
cold start, which warm users are sampled) into one comparison with more cold-start users.

    python bench/recsys_seeds.py .p13n/bench/recsys-llm-seed0 .p13n/bench/recsys-llm-seed1 ...

Each run's challenger is compared with the best classic model of that run and user group, chosen
on that run's validation split; the per-user NDCG@10 differences are then pooled over runs.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from p13n.evaluate.stats import bootstrap_mean, paired_decomposable

GROUPS = ("all", "cold", "warm")
RESAMPLES = 5000


def _values(run: dict[str, Any], model: str, group: str) -> dict[str, float]:
    values: dict[str, float] = run["per_user_ndcg@10"][model]
    cold = set(run["cold_user_ids"])
    if group == "all":
        return values
    return {u: v for u, v in values.items() if (u in cold) == (group == "cold")}


def pooled(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Every model's pooled NDCG@10 per group, and each hybrid against each run's best classic."""
    models = list(runs[0]["per_user_ndcg@10"])
    out: dict[str, Any] = {"runs": len(runs), "models": {}, "comparisons": []}
    for model in models:
        out["models"][model] = {}
        for group in GROUPS:
            values = [v for run in runs for v in _values(run, model, group).values()]
            interval = bootstrap_mean(values, resamples=RESAMPLES, seed=0)
            out["models"][model][group] = {
                "ndcg@10": interval.value,
                "low": interval.low,
                "high": interval.high,
                "users": len(values),
            }
    challengers = [m for m in ("hybrid", "llm-hybrid", "llm-rerank") if m in models]
    for challenger in challengers:
        for group in GROUPS:
            system: list[float] = []
            baseline: list[float] = []
            chosen: list[str] = []
            for run in runs:
                comparison = next(
                    c
                    for c in run["summary"]["comparisons"]
                    if c["model"] == challenger and c["group"] == group
                )
                best = comparison["best_classic"]
                chosen.append(best)
                mine, theirs = _values(run, challenger, group), _values(run, best, group)
                for user in mine:
                    system.append(mine[user])
                    baseline.append(theirs[user])
            paired = paired_decomposable(
                system, baseline, higher_is_better=True, resamples=RESAMPLES, seed=0
            )
            out["comparisons"].append(
                {
                    "model": challenger,
                    "group": group,
                    "best_classic_per_run": chosen,
                    "pairs": len(system),
                    **asdict(paired),
                }
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+", type=Path, help="Output folders of the runs.")
    parser.add_argument("--out", type=Path, default=Path("bench/out/recsys_seeds.json"))
    args = parser.parse_args()
    runs = [json.loads((folder / "results.json").read_text()) for folder in args.runs]
    seeds = [run["config"]["seed"] for run in runs]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"runs share a seed: {seeds}")
    result = pooled(runs)
    result["seeds"] = seeds
    console = Console(width=160)
    table = Table(title=f"NDCG@10 pooled over seeds {seeds} (95% bootstrap intervals)")
    table.add_column("model")
    for group in GROUPS:
        users = result["models"][next(iter(result["models"]))][group]["users"]
        table.add_column(f"{group} ({users})", justify="right")
    for model, groups in result["models"].items():
        table.add_row(
            model,
            *(
                f"{g['ndcg@10']:.4f} [{g['low']:.4f}, {g['high']:.4f}]"
                for g in (groups[group] for group in GROUPS)
            ),
        )
    console.print(table)
    comparisons = Table(title="Against each run's best classic model (chosen on validation)")
    for header in ("challenger", "group", "best classic per run", "Δ NDCG@10 [95% CI]", "p"):
        comparisons.add_column(header)
    comparisons.add_column("W/L/T", justify="right")
    for c in result["comparisons"]:
        comparisons.add_row(
            c["model"],
            c["group"],
            ",".join(c["best_classic_per_run"]),
            f"{c['difference']:+.4f} [{c['low']:+.4f}, {c['high']:+.4f}]",
            f"{c['p_value']:.3f}",
            f"{c['wins']}/{c['losses']}/{c['ties']}",
        )
    console.print(comparisons)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    console.print(f"written: {args.out}")


if __name__ == "__main__":
    main()
