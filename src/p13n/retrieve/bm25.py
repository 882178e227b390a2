"""BM25 over a user's corpus with ``bm25s`` (sparse precomputed scores: querying is a lookup)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from p13n.retrieve.base import Scores, UserCorpus, bm25s_module, term_matches, tokenize

RANK_BM25_EPSILON = 0.25


@dataclass(frozen=True)
class _Index:
    bm25: Any
    vocabulary: frozenset[str]
    floor_idf: float
    floored: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    """Term in more than half of the rows -> (rows holding it, its tf component there)."""


@dataclass(frozen=True)
class BM25Retriever:
    """Okapi BM25 with the scores of rank_bm25's ``BM25Okapi``, what the LaMP code uses.

    bm25s (method ``robertson``) does the indexing and scoring; two differences from rank_bm25
    are corrected here so that the scores are equal (tests compare them):
    bm25s leaves out the constant factor (k1 + 1), and it gives idf 0 to a term found in more
    than half of the rows, where rank_bm25 gives it ``epsilon`` times the mean idf. In a small
    personal corpus such terms are common (a writer's favourite words), and with idf 0 a query
    made only of them would not rank anything; the floor is added back from the term
    frequencies kept for exactly those terms (rank_bm25's semantics, not bm25s's, so written here).
    """

    k1: float = 1.5
    b: float = 0.75
    name: str = "bm25"

    def _index(self, corpus: UserCorpus) -> _Index | None:
        bm25s = bm25s_module()
        tokens = [tokenize(corpus.retrievable_text(row)) for row in range(len(corpus))]
        if not any(tokens):  # stopwords only: nothing can match
            return None
        index = bm25s.BM25(k1=self.k1, b=self.b, method="robertson")
        index.index(tokens, show_progress=False)
        rows = len(tokens)
        frequency = Counter(term for row in tokens for term in set(row))
        idf = {t: math.log(rows - n + 0.5) - math.log(n + 0.5) for t, n in frequency.items()}
        floor_idf = RANK_BM25_EPSILON * sum(idf.values()) / len(idf)
        lengths = np.array([len(row) for row in tokens], dtype=np.float64)
        norm = self.k1 * (1 - self.b + self.b * lengths / lengths.mean())
        floored: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for term in (t for t, value in idf.items() if value < 0):
            holding = [(r, row.count(term)) for r, row in enumerate(tokens) if term in row]
            where = np.array([r for r, _ in holding])
            tf = np.array([n for _, n in holding], dtype=np.float64)
            floored[term] = (where, tf * (self.k1 + 1) / (tf + norm[where]))
        return _Index(index, frozenset(frequency), floor_idf, floored)

    def matches(self, query: str, corpus: UserCorpus) -> npt.NDArray[np.bool_]:
        return term_matches(query, corpus)

    def score(self, query: str, corpus: UserCorpus) -> Scores:
        if len(corpus) == 0:
            return np.zeros(0)
        index = corpus.derived(("bm25", self.k1, self.b), self._index)
        if index is None:
            return np.zeros(len(corpus))
        terms = [t for t in tokenize(query) if t in index.vocabulary]
        if not terms:
            return np.zeros(len(corpus))
        scores: Scores = index.bm25.get_scores(terms).astype(np.float64) * (self.k1 + 1)
        for term in terms:
            if term in index.floored:
                where, tf_component = index.floored[term]
                scores[where] += index.floor_idf * tf_component
        return scores
