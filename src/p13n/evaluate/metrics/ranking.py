"""Ranking metrics for recommendation, as ranx computes them."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

from p13n.evaluate.metrics.base import mean


def ranking_metrics_per_query(
    qrels: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Mapping[str, float]],
    ks: Sequence[int] = (5, 10, 20),
) -> dict[str, dict[str, float]]:
    """precision/recall/ndcg/hit_rate/mrr@k for each query of ``qrels``, as ranx computes them.

    A query the run lacks scores 0; run queries absent from ``qrels`` are ignored; every query
    needs at least one relevant item (relevance > 0). NDCG uses ranx's linear gain.
    """
    if not qrels:
        raise ValueError("no queries to score")
    empty = sorted(q for q, rels in qrels.items() if not any(r > 0 for r in rels.values()))
    if empty:
        raise ValueError(f"queries without a relevant item: {empty[:5]}")
    from ranx import Qrels, Run, evaluate

    names = [f"{m}@{k}" for k in ks for m in ("precision", "recall", "ndcg", "hit_rate", "mrr")]
    ranx_qrels = Qrels({q: {d: int(r) for d, r in rels.items()} for q, rels in qrels.items()})
    ranx_run = Run({q: {d: float(s) for d, s in docs.items()} for q, docs in run.items() if docs})
    ranx_run = ranx_run.make_comparable(ranx_qrels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba's "unsafe cast from uint64 to int64"
        evaluate(ranx_qrels, ranx_run, names, return_mean=False, save_results_in_run=True)
    return {name: {q: float(ranx_run.scores[name][q]) for q in sorted(qrels)} for name in names}


def ranking_metrics(
    qrels: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Mapping[str, float]],
    ks: Sequence[int] = (5, 10, 20),
) -> dict[str, float]:
    """The mean over queries of each of ``ranking_metrics_per_query``."""
    per_query = ranking_metrics_per_query(qrels, run, ks)
    return {name: mean(list(values.values())) for name, values in per_query.items()}


__all__ = ["ranking_metrics", "ranking_metrics_per_query"]
