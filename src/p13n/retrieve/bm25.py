"""BM25 over a user's corpus with ``bm25s`` (sparse precomputed scores: querying is a lookup)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from p13n.retrieve.base import Scores, UserCorpus, tokenize


@dataclass(frozen=True)
class BM25Retriever:
    """Okapi BM25 as rank_bm25's ``BM25Okapi`` (what the LaMP code uses) computes it.

    bm25s's ``robertson`` method leaves out the (k1 + 1) factor, a constant that does not change
    the ranking; multiplying it back gives rank_bm25's scores. One difference remains: a term in
    more than half of the user's documents has idf 0 here, and a small positive floor in rank_bm25
    (``epsilon`` times the mean idf) — such a term barely discriminates either way.
    """

    k1: float = 1.5
    b: float = 0.75
    name: str = "bm25"

    def _index(self, corpus: UserCorpus) -> Any:
        import bm25s

        index = bm25s.BM25(k1=self.k1, b=self.b, method="robertson")
        tokens = [tokenize(corpus.retrievable_text(row)) for row in range(len(corpus))]
        if not any(tokens):  # stopwords only: bm25s cannot index an empty vocabulary
            return None
        index.index(tokens, show_progress=False)
        return index

    def score(self, query: str, corpus: UserCorpus) -> Scores:
        if len(corpus) == 0:
            return np.zeros(0)
        index = corpus.derived(("bm25", self.k1, self.b), self._index)
        if index is None:
            return np.zeros(len(corpus))
        terms = [t for t in tokenize(query) if t in index.vocab_dict]
        if not terms:
            return np.zeros(len(corpus))
        scores: Scores = index.get_scores(terms).astype(np.float64)
        return scores * (self.k1 + 1)
