"""The recommender benchmark's report: every model's test figures per user group (all,
cold-start, warm) with intervals, the challengers against the best classic model, each model's
top 10 per user, and its bias and fairness figures; markdown tables and plots of NDCG@10 and of
fairness."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from p13n.benchmarks import recsys_fairness
from p13n.benchmarks.recsys import RecsysResult
from p13n.benchmarks.report import Report, save_figure, write_report
from p13n.evaluate.stats import bootstrap_mean, paired_decomposable
from p13n.recommend.ranking import KS

RESAMPLES = 2000


def groups(result: RecsysResult) -> dict[str, list[int]]:
    cold = sorted(result.cold)
    warm = [r for r in result.rows if r not in result.cold]
    return {"all": list(result.rows), "cold": cold, "warm": warm}


def summary(result: RecsysResult) -> dict[str, Any]:
    """Every model's test metrics per user group, with 95% intervals for NDCG@10, and the LLM
    hybrid against the best classic model chosen on validation."""
    names = [f"{m}@{k}" for k in KS for m in ("precision", "recall", "ndcg", "hit_rate", "mrr")]
    out: dict[str, Any] = {"models": {}, "comparisons": []}
    for model in result.models:
        entry: dict[str, Any] = {
            "family": model.family,
            "params": model.params,
            "fit_seconds": round(model.fit_seconds, 2),
            "notes": model.notes,
            "valid_ndcg@10": model.valid.mean("ndcg@10"),
        }
        for group, rows in groups(result).items():
            if not rows:
                continue
            metrics = {name: model.test.mean(name, rows) for name in names}
            values = [model.test.per_user["ndcg@10"][r] for r in rows]
            interval = bootstrap_mean(values, resamples=RESAMPLES, seed=result.config.seed)
            metrics["ndcg@10_low"], metrics["ndcg@10_high"] = interval.low, interval.high
            metrics["coverage@10"] = model.test.coverage(10, rows)
            metrics["users"] = len(rows)
            entry[group] = metrics
        out["models"][model.name] = entry
    for challenger in ("hybrid", "llm-hybrid", "llm-rerank"):
        if not any(m.name == challenger for m in result.models):
            continue
        for group, rows in groups(result).items():
            if rows:
                out["comparisons"].append(_compare(result, challenger, group, rows))
    return out


def _compare(result: RecsysResult, challenger: str, group: str, rows: list[int]) -> dict[str, Any]:
    classic_models = [m for m in result.models if m.family == "classic"]
    best = max(classic_models, key=lambda m: m.valid.mean("ndcg@10", rows))
    system = result.model(challenger).test.per_user["ndcg@10"]
    baseline = best.test.per_user["ndcg@10"]
    paired = paired_decomposable(
        [system[r] for r in rows],
        [baseline[r] for r in rows],
        higher_is_better=True,
        resamples=RESAMPLES,
        seed=result.config.seed,
    )
    return {"model": challenger, "group": group, "best_classic": best.name, **asdict(paired)}


def results(result: RecsysResult) -> dict[str, Any]:
    """What ``results.json`` holds: the config, the summary, every model's per-user NDCG@10
    and top 10."""
    data = result.split.train
    return {
        "config": json.loads(result.config.model_dump_json()),
        "split": result.split.name,
        "users": len(result.rows),
        "cold_users": len(result.cold),
        "seconds": round(result.seconds, 1),
        "llm_calls": result.llm_calls,
        "summary": summary(result),
        "fairness": recsys_fairness.fairness(result),
        "per_user_ndcg@10": {
            model.name: {
                data.user_ids[row]: value for row, value in model.test.per_user["ndcg@10"].items()
            }
            for model in result.models
        },
        "cold_user_ids": sorted(data.user_ids[row] for row in result.cold),
        "top10": {
            model.name: {
                data.user_ids[row]: [data.item_ids[c] for c, _ in model.test.ranked[row][:10]]
                for row in result.rows
                if row in model.test.ranked
            }
            for model in result.models
        },
    }


def write_outputs(result: RecsysResult, out: Path) -> dict[str, Path]:
    """results.json (config, summary, fairness, each model's top-10 per user), summary.md,
    ndcg.png and fairness.png."""
    payload = results(result)
    recsys_fairness.plot(payload["fairness"], out / "fairness.png")
    report = Report(
        results=payload,
        markdown=markdown(payload),
        plot_name="ndcg.png",
        plot=lambda path: plot(payload["summary"], path),
        json_newline=False,
    )
    return write_report(report, out)


def markdown(payload: dict[str, Any]) -> str:
    """The test figures of every model per user group, and the comparisons, as markdown."""
    summary_ = payload["summary"]
    lines = [
        f"{payload['split']}: {payload['users']} users ({payload['cold_users']} cold-start)",
        "",
        "| model | group | NDCG@10 [95% CI] | HR@10 | MRR@10 | P@10 | R@10 | NDCG@20 | R@20 "
        "| coverage@10 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in summary_["models"].items():
        for group in ("all", "cold", "warm"):
            m = entry.get(group)
            if m is None:
                continue
            lines.append(
                f"| {name} | {group} ({m['users']}) | {m['ndcg@10']:.4f} "
                f"[{m['ndcg@10_low']:.4f}, {m['ndcg@10_high']:.4f}] | {m['hit_rate@10']:.4f} "
                f"| {m['mrr@10']:.4f} | {m['precision@10']:.4f} | {m['recall@10']:.4f} "
                f"| {m['ndcg@20']:.4f} | {m['recall@20']:.4f} | {m['coverage@10']:.3f} |"
            )
    lines += [
        "",
        "| challenger | group | best classic (on validation) | Δ NDCG@10 [95% CI] | p | W/L/T |",
        "|---|---|---|---|---|---|",
    ]
    for c in summary_["comparisons"]:
        lines.append(
            f"| {c['model']} | {c['group']} | {c['best_classic']} | {c['difference']:+.4f} "
            f"[{c['low']:+.4f}, {c['high']:+.4f}] | {_p(c['p_value'])} "
            f"| {c['wins']}/{c['losses']}/{c['ties']} |"
        )
    lines += ["", "Learned settings:", ""]
    for name, entry in summary_["models"].items():
        params = "" if entry["family"] == "hybrid" else f"{entry['params']} "
        lines.append(f"- {name}: {params}{entry['notes']}".rstrip())
    if "fairness" in payload:
        lines += recsys_fairness.markdown(payload["fairness"])
    return "\n".join(lines) + "\n"


def plot(summary_: dict[str, Any], path: Path) -> Path:
    """NDCG@10 of every model for all, cold-start and warm users, with 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(summary_["models"])
    group_names = [g for g in ("all", "cold", "warm") if g in summary_["models"][models[0]]]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(models) + 2), 4))
    width = 0.8 / len(group_names)
    for j, group in enumerate(group_names):
        values = [summary_["models"][m][group]["ndcg@10"] for m in models]
        lows = [
            v - summary_["models"][m][group]["ndcg@10_low"]
            for m, v in zip(models, values, strict=True)
        ]
        highs = [
            summary_["models"][m][group]["ndcg@10_high"] - v
            for m, v in zip(models, values, strict=True)
        ]
        positions = np.arange(len(models)) + (j - (len(group_names) - 1) / 2) * width
        users = summary_["models"][models[0]][group]["users"]
        ax.bar(positions, values, width, yerr=[lows, highs], capsize=2, label=f"{group} ({users})")
    ax.set_xticks(np.arange(len(models)), models, rotation=30, ha="right")
    ax.set_ylabel("NDCG@10 (test)")
    ax.set_title("Recommenders side by side (95% bootstrap intervals)")
    ax.legend()
    return save_figure(fig, path)


def _p(value: float) -> str:
    return "< 0.001" if value < 0.001 else f"{value:.3f}"
