"""What retrievers read (a user's corpus, in columns) and what they return (``Retrieved``)."""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import ModuleType
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np
import numpy.typing as npt

Scores = npt.NDArray[np.float64]
T = TypeVar("T")

_WORD = re.compile(r"\w+")


@functools.cache
def bm25s_module() -> ModuleType:
    """bm25s, imported on first use (it brings scipy). Importing it sets its logger to DEBUG,
    which logs every index built; that logger is kept at WARNING."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    module: ModuleType = bm25s
    return module


@functools.cache
def stopwords() -> frozenset[str]:
    """bm25s's English stopwords (loaded on first use: bm25s brings scipy)."""
    bm25s_module()
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


def tokenize(text: str) -> list[str]:
    """Lowercased word tokens without English stopwords: what the sparse retrievers index."""
    stop = stopwords()
    return [w for w in _WORD.findall(text.lower()) if w not in stop]


@dataclass(eq=False)
class UserCorpus:
    """Everything retrievable for one user at one data version, one row per unit.

    ``source`` is ``document``, ``interaction`` or ``attribute``; ``owner`` is the user whose data
    the row is (another user only in a collaborative corpus, which is explicitly asked for).
    ``vectors`` holds the stored embedding of each row, or a zero row where none is stored.
    """

    user_id: str
    version: str
    ids: list[str]
    sources: list[str]
    kinds: list[str]
    titles: list[str | None]
    texts: list[str]
    timestamps: list[datetime | None]
    owners: list[str]
    encoder_id: str | None = None
    vectors: npt.NDArray[np.float32] | None = None
    has_vector: npt.NDArray[np.bool_] | None = None
    _derived: dict[Hashable, Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    def derived(self, key: Hashable, build: Callable[[UserCorpus], T]) -> T:
        """An index built from this corpus once and kept with it: it lives exactly as long as the
        corpus stays cached, so it can never outlive the data version it was built from."""
        with self._lock:
            if key not in self._derived:
                self._derived[key] = build(self)
            value: T = self._derived[key]
            return value

    def retrievable_text(self, row: int) -> str:
        title = self.titles[row]
        return f"{title}\n{self.texts[row]}" if title else self.texts[row]


@dataclass(frozen=True)
class RetrievedItem:
    id: str
    source: str
    kind: str
    title: str | None
    text: str
    score: float
    timestamp: datetime | None
    owner: str


@dataclass(frozen=True)
class Retrieved:
    """The top-k rows for a query, best first, with the scores the retriever gave them."""

    query: str
    retriever: str
    items: tuple[RetrievedItem, ...]
    unmatched: int = 0
    """Rows of the top k left out for showing no sign of relevance: no term shared with the
    query (``require_match``), or a score at or under ``min_score``."""
    min_score: float | None = None
    require_match: bool = False

    def relevance_rule(self) -> str:
        """What a row needed to be quoted, in words (for traces)."""
        rules = ["a term shared with the input"] if self.require_match else []
        if self.min_score is not None:
            rules.append(f"a score above {self.min_score:g}")
        return " and ".join(rules) or "nothing"

    def __len__(self) -> int:
        return len(self.items)


@runtime_checkable
class Retriever(Protocol):
    """Scores every row of a user's corpus for a query (higher is better)."""

    @property
    def name(self) -> str: ...

    def score(self, query: str, corpus: UserCorpus) -> Scores: ...


@runtime_checkable
class Matcher(Protocol):
    """A retriever that can tell a row with a sign of relevance from one without (a sparse
    retriever: a term shared with the query), beyond ranking it."""

    def matches(self, query: str, corpus: UserCorpus) -> npt.NDArray[np.bool_]: ...


def matches(retriever: Retriever, query: str, corpus: UserCorpus) -> npt.NDArray[np.bool_]:
    """The rows ``retriever`` finds some sign of relevance in: every row for one that only
    ranks (a dense cosine is a degree, not a match; ``min_score`` thresholds it)."""
    if isinstance(retriever, Matcher):
        return retriever.matches(query, corpus)
    return np.ones(len(corpus), dtype=bool)


def term_matches(query: str, corpus: UserCorpus) -> npt.NDArray[np.bool_]:
    """Rows sharing at least one indexed word (``tokenize``) with the query. Not a BM25 score
    above 0: in a small corpus rank_bm25's idf floor makes a matching row score 0 or less."""

    def token_sets(corpus: UserCorpus) -> list[frozenset[str]]:
        return [frozenset(tokenize(corpus.retrievable_text(r))) for r in range(len(corpus))]

    terms = set(tokenize(query))
    rows = corpus.derived("token-sets", token_sets)
    return np.array([not terms.isdisjoint(row) for row in rows], dtype=bool)


def top_k(
    retriever: Retriever,
    query: str,
    corpus: UserCorpus,
    k: int,
    *,
    min_score: float | None = None,
    require_match: bool = False,
) -> Retrieved:
    """Of the ``k`` best rows (all of them when there are fewer), those that score above
    ``min_score`` and, with ``require_match``, that the retriever ``matches``. Ties keep corpus
    order (documents, then interactions, then attributes; each newest first): deterministic."""
    if k < 0:
        raise ValueError(f"k must be >= 0, not {k}")
    if len(corpus) == 0 or k == 0:
        return Retrieved(
            query, retriever.name, (), min_score=min_score, require_match=require_match
        )
    scores = retriever.score(query, corpus)
    order = np.argsort(-scores, kind="stable")[:k]
    quoted = scores > (-np.inf if min_score is None else min_score)
    if require_match:
        quoted &= matches(retriever, query, corpus)
    kept = [row for row in order.tolist() if quoted[row]]
    return Retrieved(
        query=query,
        retriever=retriever.name,
        items=tuple(
            RetrievedItem(
                id=corpus.ids[row],
                source=corpus.sources[row],
                kind=corpus.kinds[row],
                title=corpus.titles[row],
                text=corpus.texts[row],
                score=float(scores[row]),
                timestamp=corpus.timestamps[row],
                owner=corpus.owners[row],
            )
            for row in kept
        ),
        unmatched=len(order) - len(kept),
        min_score=min_score,
        require_match=require_match,
    )


class LRUCache:
    """A bounded map that evicts the least recently used entry (thread-safe)."""

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, not {max_entries}")
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = self.evictions = 0

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                return self._entries[key]
            self.misses += 1
            return None

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
                self.evictions += 1

    def discard(self, predicate: Callable[[Hashable], bool]) -> None:
        with self._lock:
            for key in [k for k in self._entries if predicate(k)]:
                del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)


def rank_positions(scores: Sequence[float] | Scores) -> npt.NDArray[np.int64]:
    """1-based rank of each row under ``scores`` (ties keep row order)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(1, len(order) + 1)
    return ranks
