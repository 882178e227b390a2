"""Full-ranking evaluation: every item the user has not seen is a candidate (no sampled
negatives), P/R/NDCG/HR/MRR@k from ranx, catalog coverage, and the same for cold-start users."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from p13n.evaluate.metrics import ranking_metrics_per_query
from p13n.recommend.hybrid import ndcg_at
from p13n.recommend.models import CLASSIC_GRIDS, Recommender, Scores, classic
from p13n.recommend.split import Split

KS = (5, 10, 20)
Phase = Literal["valid", "test"]


def excluded(split: Split, row: int, phase: Phase) -> np.ndarray:
    """Columns a user's ranking leaves out: training items, and at test time the valid items."""
    seen = split.train.seen(row)
    if phase == "test":
        seen = np.concatenate([seen, np.array(split.valid.get(row, ()), dtype=np.int64)])
    return seen


def top_items(
    scores: Scores, exclude: Sequence[np.ndarray], k: int
) -> list[list[tuple[int, float]]]:
    """Each row's ``k`` best columns with their scores, excluded columns left out."""
    masked = scores.astype(np.float64, copy=True)
    for i, columns in enumerate(exclude):
        masked[i, columns] = -np.inf
    k = min(k, masked.shape[1])
    best = np.argpartition(-masked, k - 1, axis=1)[:, :k]
    result: list[list[tuple[int, float]]] = []
    for i in range(masked.shape[0]):
        order = sorted(best[i], key=lambda col: (-masked[i, col], col))
        result.append([(int(c), float(masked[i, c])) for c in order if np.isfinite(masked[i, c])])
    return result


def rank(
    model: Recommender,
    split: Split,
    rows: Sequence[int],
    phase: Phase,
    *,
    k: int = max(KS),
    batch: int = 256,
) -> dict[int, list[tuple[int, float]]]:
    """The model's top ``k`` unseen items for each row."""
    ranked: dict[int, list[tuple[int, float]]] = {}
    for start in range(0, len(rows), batch):
        chunk = list(rows[start : start + batch])
        scores = model.scores(chunk)
        tops = top_items(scores, [excluded(split, row, phase) for row in chunk], k)
        ranked.update(zip(chunk, tops, strict=True))
    return ranked


@dataclass(frozen=True)
class RankingResult:
    """Per-user metric values (``metric -> user row -> value``) and each user's top list."""

    per_user: Mapping[str, Mapping[int, float]]
    ranked: Mapping[int, list[tuple[int, float]]]
    n_items: int

    def mean(self, metric: str, rows: Iterable[int] | None = None) -> float:
        values = self.per_user[metric]
        chosen = list(values) if rows is None else [r for r in rows if r in values]
        return float(np.mean([values[r] for r in chosen])) if chosen else float("nan")

    def coverage(self, k: int = 10, rows: Iterable[int] | None = None) -> float:
        """Share of the catalog that appears in at least one of these users' top ``k``."""
        chosen = self.ranked.keys() if rows is None else [r for r in rows if r in self.ranked]
        shown = {col for row in chosen for col, _ in self.ranked[row][:k]}
        return len(shown) / self.n_items


def score_ranking(
    ranked: Mapping[int, list[tuple[int, float]]],
    held_out: Mapping[int, Sequence[int]],
    n_items: int,
    ks: Sequence[int] = KS,
) -> RankingResult:
    """ranx's metrics of these rankings against the held-out items (one query per user)."""
    qrels = {str(row): {str(col): 1 for col in held_out[row]} for row in ranked}
    # ranx orders by score; the rank position is passed as the score so ties keep our order.
    run = {
        str(row): {str(col): float(len(top) - i) for i, (col, _) in enumerate(top)}
        for row, top in ranked.items()
    }
    per_query = ranking_metrics_per_query(qrels, run, ks)
    per_user = {name: {int(q): v for q, v in values.items()} for name, values in per_query.items()}
    return RankingResult(per_user, dict(ranked), n_items)


def evaluate(
    model: Recommender,
    split: Split,
    phase: Phase,
    rows: Sequence[int] | None = None,
    ks: Sequence[int] = KS,
) -> RankingResult:
    """Rank all unseen items for the phase's users and score the held-out ones."""
    held_out = split.valid if phase == "valid" else split.test
    users = sorted(held_out) if rows is None else [r for r in rows if r in held_out]
    ranked = rank(model, split, users, phase, k=max(ks))
    return score_ranking(ranked, held_out, split.train.n_items, ks)


def validation_ndcg(
    model: Recommender, split: Split, rows: Sequence[int], k: int = 10, batch: int = 256
) -> float:
    """Mean NDCG@k on the validation items of ``rows``, computed in numpy (``hybrid.ndcg_at``,
    tested equal to ranx) because tuning calls it for every grid point."""
    users = [r for r in rows if r in split.valid]
    total = 0.0
    for start in range(0, len(users), batch):
        chunk = users[start : start + batch]
        scores = model.scores(chunk).astype(np.float64)
        relevant = np.zeros(scores.shape, dtype=bool)
        for i, row in enumerate(chunk):
            scores[i, excluded(split, row, "valid")] = -np.inf
            relevant[i, list(split.valid[row])] = True
        total += ndcg_at(scores, relevant, k) * len(chunk)
    return total / max(len(users), 1)


def tune_classic(
    name: str, split: Split, rows: Sequence[int]
) -> tuple[Recommender, dict[str, Any], float]:
    """The grid point of ``CLASSIC_GRIDS[name]`` with the best validation NDCG@10, its
    parameters and fit time."""
    best: tuple[float, Recommender, dict[str, Any], float] | None = None
    for params in CLASSIC_GRIDS[name]:
        model = classic.get(name).make(params)
        started = time.perf_counter()
        model.fit(split.train)
        seconds = time.perf_counter() - started
        score = validation_ndcg(model, split, rows)
        if best is None or score > best[0]:
            best = (score, model, params, seconds)
    assert best is not None  # every grid has at least one point
    return best[1], best[2], best[3]
