"""Retrievers built on other retrievers: hybrid (reciprocal-rank fusion) and recency decay."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

from p13n.retrieve.base import Retriever, Scores, UserCorpus, matches, rank_positions

SECONDS_PER_DAY = 86400.0


@dataclass(frozen=True)
class HybridRetriever:
    """Reciprocal-rank fusion (Cormack et al., 2009): score = Σ 1 / (rrf_k + rank) over the
    component retrievers, so scores on different scales combine without calibration. A row a
    component scores exactly 0 (a sparse retriever found none of the query's terms in it) gets
    no credit from that component: it was not retrieved, only listed."""

    components: tuple[Retriever, ...]
    rrf_k: int = 60

    def __post_init__(self) -> None:
        if len(self.components) < 2:
            raise ValueError("a hybrid retriever fuses two or more retrievers")

    @property
    def name(self) -> str:
        return "hybrid(" + ",".join(c.name for c in self.components) + ")"

    def matches(self, query: str, corpus: UserCorpus) -> npt.NDArray[np.bool_]:
        """Rows some component matches (any row, with a component that only ranks)."""
        found = np.zeros(len(corpus), dtype=bool)
        for component in self.components:
            found |= matches(component, query, corpus)
        return found

    def score(self, query: str, corpus: UserCorpus) -> Scores:
        fused = np.zeros(len(corpus))
        for component in self.components:
            scores = component.score(query, corpus)
            fused += np.where(scores != 0, 1.0 / (self.rrf_k + rank_positions(scores)), 0.0)
        return fused


@dataclass(frozen=True)
class RecencyRetriever:
    """Any retriever's scores, decayed by age: times 0.5 ** (age / half_life). Age is measured from
    the user's newest dated row (not the wall clock), so results do not drift over time; undated
    rows count as old as the oldest dated one. A negative score is divided by the factor instead,
    so older rows always move down."""

    inner: Retriever
    half_life_days: float = 30.0

    def __post_init__(self) -> None:
        if self.half_life_days <= 0:
            raise ValueError(f"half_life_days must be > 0, not {self.half_life_days}")

    @property
    def name(self) -> str:
        return f"recency({self.inner.name},{self.half_life_days:g}d)"

    def _factors(self, corpus: UserCorpus) -> Scores:
        moments = [t.timestamp() for t in corpus.timestamps if isinstance(t, datetime)]
        if not moments:
            return np.ones(len(corpus))
        newest, oldest = max(moments), min(moments)
        ages = np.array(
            [
                newest - (t.timestamp() if isinstance(t, datetime) else oldest)
                for t in corpus.timestamps
            ]
        )
        return np.power(0.5, ages / (self.half_life_days * SECONDS_PER_DAY))

    def matches(self, query: str, corpus: UserCorpus) -> npt.NDArray[np.bool_]:
        return matches(self.inner, query, corpus)

    def score(self, query: str, corpus: UserCorpus) -> Scores:
        scores = self.inner.score(query, corpus)
        factors = corpus.derived(("recency", self.half_life_days), self._factors)
        return np.where(scores >= 0, scores * factors, scores / factors)
