"""Bias and fairness of every recommender in a ``p13n bench recsys`` run, side by side: test
NDCG@10 per gender and age band (Kruskal-Wallis across groups), popularity bias of the top 10
(average popularity, long-tail share, Gini of exposure) and miscalibration of the genre mix
against each user's training history. The measures are ``p13n.evaluate.fairness``'s."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from p13n.benchmarks.recsys import RecsysResult
from p13n.benchmarks.report import save_figure
from p13n.evaluate.fairness import (
    average_popularity,
    compare_groups,
    gini_index,
    miscalibration,
    tail_items,
    tail_percentage,
)
from p13n.recommend.data import RecData

K = 10
# MovieLens 1M's age bands (its users.dat codes), applied to 100K's ages in years
AGE_BANDS = ((18, "under 18"), (25, "18-24"), (35, "25-34"), (45, "35-44"), (56, "45-55"))


def age_band(age: object) -> str | None:
    """An age in years as its band; a band already coded (ML-1M) as it is."""
    if isinstance(age, str) and age:
        return age
    if not isinstance(age, int | float) or isinstance(age, bool):
        return None
    return next((band for limit, band in AGE_BANDS if age < limit), "56+")


def user_groups(data: RecData, rows: list[int]) -> dict[str, dict[int, str]]:
    """Each evaluated user's gender and age band, where the data set has them."""
    groups: dict[str, dict[int, str]] = {"gender": {}, "age": {}}
    for row in rows:
        attributes = data.user_attributes.get(data.user_ids[row], {})
        if isinstance(attributes.get("gender"), str) and attributes["gender"]:
            groups["gender"][row] = attributes["gender"]
        band = age_band(attributes.get("age"))
        if band is not None:
            groups["age"][row] = band
    return {attribute: found for attribute, found in groups.items() if found}


def fairness(result: RecsysResult, k: int = K) -> dict[str, Any]:
    """Per model: popularity bias and miscalibration of its top ``k``, and test NDCG@10 per
    user group; plus the same popularity figures for the users' own held-out items."""
    train = result.split.train
    counts = np.bincount(train.cols, minlength=train.n_items)
    tail = tail_items(counts)
    genres = [_genres(train, col) for col in range(train.n_items)]
    has_genres = any(genres)
    groups = user_groups(train, list(result.rows))
    history = {row: [genres[col] for col in train.seen(row)] for row in result.rows}
    models: dict[str, Any] = {}
    for model in result.models:
        tops = {
            row: [col for col, _ in model.test.ranked[row][:k]]
            for row in result.rows
            if model.test.ranked.get(row)
        }
        entry: dict[str, Any] = {
            "average_popularity": average_popularity(list(tops.values()), counts),
            "tail_share": tail_percentage(list(tops.values()), tail),
            "gini": gini_index(list(tops.values()), train.n_items),
            "groups": {
                attribute: asdict(compare_groups(attribute, model.test.per_user["ndcg@10"], by))
                for attribute, by in groups.items()
            },
        }
        if has_genres:
            gaps = [
                miscalibration(history[row], [genres[col] for col in top])
                for row, top in tops.items()
            ]
            known = [gap for gap in gaps if gap is not None]
            entry["miscalibration"] = float(np.mean(known)) if known else None
        models[model.name] = entry
    held_out = [list(result.split.test[row]) for row in result.rows if result.split.test.get(row)]
    return {
        "k": k,
        "tail_items": len(tail),
        "items": train.n_items,
        "users_own_test_items": {
            "average_popularity": average_popularity(held_out, counts),
            "tail_share": tail_percentage(held_out, tail),
        },
        "models": models,
    }


def _genres(data: RecData, col: int) -> list[str]:
    found = data.catalog[data.item_ids[col]].attributes.get("genres") or []
    return [str(genre) for genre in found] if isinstance(found, list) else []


def markdown(report: dict[str, Any]) -> list[str]:
    """The fairness tables, as lines of markdown."""
    k = report["k"]
    own = report["users_own_test_items"]
    models = report["models"]
    lines = [
        "",
        f"Popularity bias and calibration of each model's top {k} (test; the long tail is the "
        f"{report['tail_items']} least-interacted of {report['items']} items, as RecBole cuts "
        f"it). The users' own held-out items: average popularity "
        f"{own['average_popularity']:.1f}, long-tail share {own['tail_share']:.3f}.",
        "",
        f"| model | avg popularity@{k} | long-tail share@{k} | Gini@{k} | miscalibration@{k} |",
        "|---|--:|--:|--:|--:|",
    ]
    for name, entry in models.items():
        gap = entry.get("miscalibration")
        lines.append(
            f"| {name} | {entry['average_popularity']:.1f} | {entry['tail_share']:.3f} "
            f"| {entry['gini']:.3f} | {'—' if gap is None else f'{gap:.3f}'} |"
        )
    groups = next(iter(models.values()))["groups"] if models else {}
    for attribute, first in groups.items():
        names = sorted(first["means"], key=_order)
        sizes = first["sizes"]
        lines += [
            "",
            f"Test NDCG@10 by {attribute} (Kruskal-Wallis p across groups of 5 users or more):",
            "",
            "| model | " + " | ".join(f"{n} ({sizes[n]})" for n in names) + " | gap | p |",
            "|---|" + "--:|" * (len(names) + 2),
        ]
        for name, entry in models.items():
            group = entry["groups"][attribute]
            p = group["p_value"]
            cells = " | ".join(f"{group['means'][n]:.4f}" for n in names)
            lines.append(
                f"| {name} | {cells} | {group['gap']:.4f} | "
                f"{'—' if p is None else ('< 0.001' if p < 0.001 else f'{p:.3f}')} |"
            )
    return lines


def _order(group: str) -> tuple[int, str]:
    bands = [band for _, band in AGE_BANDS] + ["56+"]
    return (bands.index(group) if group in bands else len(bands), group)


def plot(report: dict[str, Any], path: Path) -> Path:
    """Popularity bias and group gaps side by side: each model's average recommendation
    popularity (against the users' own items) and its largest NDCG@10 gap between groups."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(report["models"])
    figure, (left, right) = plt.subplots(1, 2, figsize=(max(8.0, 1.1 * len(models) + 4), 4))
    positions = np.arange(len(models))
    left.bar(positions, [report["models"][m]["average_popularity"] for m in models])
    left.axhline(report["users_own_test_items"]["average_popularity"], color="k", ls="--", lw=1)
    left.set_xticks(positions, models, rotation=30, ha="right")
    left.set_ylabel(f"average popularity of the top {report['k']}")
    left.set_title("Popularity bias (dashed: the users' own items)")
    attributes = list(report["models"][models[0]]["groups"]) if models else []
    width = 0.8 / max(len(attributes), 1)
    for j, attribute in enumerate(attributes):
        gaps = [report["models"][m]["groups"][attribute]["gap"] for m in models]
        right.bar(positions + (j - (len(attributes) - 1) / 2) * width, gaps, width, label=attribute)
    right.set_xticks(positions, models, rotation=30, ha="right")
    right.set_ylabel("largest gap in NDCG@10 between groups")
    right.set_title("Accuracy gap between user groups")
    if attributes:
        right.legend()
    return save_figure(figure, path)
