"""Turning a user's stored data into a ``UserCorpus``: documents as written, interactions and
attributes rendered as short texts. Corpora are cached per (tenant, user, data version), so a
write to the user's data invalidates everything built from it."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np
import numpy.typing as npt

from p13n.data import Interaction, Item, User
from p13n.encode import Encoder
from p13n.errors import UnknownUserError
from p13n.retrieve.base import LRUCache, UserCorpus
from p13n.store import RecordStore

Source = Literal["documents", "interactions", "attributes"]
ALL_SOURCES: tuple[Source, ...] = ("documents", "interactions", "attributes")
DEFAULT_CACHE_SIZE = 256


def render_interaction(interaction: Interaction, item: Item | None) -> tuple[str | None, str]:
    """(title, text) for an interaction: what the user did, with which item."""
    name = item.title if item is not None else interaction.item_id
    value = "" if interaction.value is None else f" ({interaction.value:g})"
    text = f"{interaction.kind}{value}: {name}"
    if item is not None and item.text and item.text != item.title:
        text += f" — {item.text}"
    return name, text


def render_attribute(key: str, value: object) -> str:
    shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return f"{key}: {shown}"


@dataclass(frozen=True)
class CorpusStats:
    cached: int
    hits: int
    misses: int
    evictions: int


class CorpusLoader:
    """Builds and caches users' corpora from a store.

    Each lookup costs one primary-key read of the user's data version; a cached corpus (and every
    index built on it) is reused while the version is unchanged. At most ``cache_size`` corpora
    are kept; the least recently used is evicted first.
    """

    def __init__(
        self,
        store: RecordStore,
        encoder: Encoder | None = None,
        *,
        sources: Sequence[Source] = ALL_SOURCES,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        unknown = sorted(set(sources) - set(ALL_SOURCES))
        if unknown:
            raise ValueError(f"unknown corpus sources {unknown}: choose from {list(ALL_SOURCES)}")
        self.store = store
        self.encoder = encoder
        self.sources = tuple(sources)
        self._cache = LRUCache(cache_size)
        self._centroids = LRUCache(max(cache_size, 10_000))

    @property
    def stats(self) -> CorpusStats:
        c = self._cache
        return CorpusStats(len(c), c.hits, c.misses, c.evictions)

    def corpus(self, user_id: str, *, version: str | None = None) -> UserCorpus:
        """The user's corpus at their current data version. Unknown user: ``UnknownUserError``.
        ``version``: the user's data version, when the caller has just read it."""
        version = version or self.store.data_version(user_id)
        if version is None:
            raise UnknownUserError(user_id, self.store.tenant)
        key = (self.store.tenant, user_id, version)
        corpus = self._cache.get(key)
        if corpus is None:
            corpus = self._build(user_id, version)
            self._cache.put(key, corpus)
        assert isinstance(corpus, UserCorpus)
        return corpus

    def forget(self, user_id: str) -> bool:
        """Drop the user's cached corpora and centroid; returns whether any was cached."""
        before = len(self._cache) + len(self._centroids)
        for cache in (self._cache, self._centroids):
            cache.discard(lambda key: key[0] == self.store.tenant and key[1] == user_id)  # type: ignore[index]
        return len(self._cache) + len(self._centroids) < before

    def similar_users(self, user_id: str, n: int) -> list[tuple[str, float]]:
        """The ``n`` users whose document centroid is closest (cosine) to this user's.

        Costs one version read per user of the tenant per call; centroids are cached per data
        version (apart from the corpus cache, which they would otherwise flush): meant for
        explicit, opt-in collaborative retrieval.
        """
        if self.encoder is None:
            raise ValueError("finding similar users needs an encoder")
        target = self.centroid(user_id)
        if target is None:
            return []
        found: list[tuple[str, float]] = []
        offset = 0
        while page := self.store.list_users(limit=500, offset=offset):
            offset += len(page)
            for summary in page:
                other = summary.user.id
                centroid = None if other == user_id else self.centroid(other)
                if centroid is not None:
                    found.append((other, float(centroid @ target)))
        found.sort(key=lambda pair: (-pair[1], pair[0]))
        return found[:n]

    def centroid(self, user_id: str) -> npt.NDArray[np.float32] | None:
        """Mean of the user's stored document vectors, L2-normalised; None without any (or
        when the user has just been deleted)."""
        if self.encoder is None:
            raise ValueError("a user's centroid needs an encoder")
        version = self.store.data_version(user_id)
        if version is None:
            return None
        key = (self.store.tenant, user_id, version, self.encoder.id)
        hit = self._centroids.get(key)
        if hit is not None:  # cached as a 1-tuple: "no centroid" is a result too
            cached: npt.NDArray[np.float32] | None = hit[0]
            return cached
        vectors = self.store.document_embeddings(user_id, self.encoder.id).vectors
        centroid = None
        if len(vectors):
            mean = vectors.mean(axis=0)
            norm = float(np.linalg.norm(mean))
            centroid = None if norm == 0 else (mean / norm).astype(np.float32)
        self._centroids.put(key, (centroid,))
        return centroid

    def collaborative_corpus(self, user_id: str, neighbours: int) -> UserCorpus:
        """The user's corpus plus the documents of their ``neighbours`` most similar users
        (``owners`` names whose each row is). Its ``version`` is the user's own."""
        own = self.corpus(user_id)
        others: list[UserCorpus] = []
        for other, _ in self.similar_users(user_id, neighbours):
            try:
                others.append(self.corpus(other))
            except UnknownUserError:  # deleted since it was found: not a neighbour any more
                continue
        key = (
            "collaborative",
            self.store.tenant,
            own.user_id,
            own.version,
            *((o.user_id, o.version) for o in others),
        )
        cached = self._cache.get(key)
        if isinstance(cached, UserCorpus):  # indexes built on it are reused too
            return cached
        combined = _concatenate(own, [_only_documents(o) for o in others])
        self._cache.put(key, combined)
        return combined

    def group_corpus(self, user_id: str, members: Sequence[str]) -> UserCorpus:
        """The documents of ``members`` (other users, e.g. of the user's persona: Persona-DB's
        collaborative refinement), after the user's own corpus if the store knows the user.
        ``owners`` names whose each row is; the version is the user's own ("" if unknown)."""
        try:
            own = self.corpus(user_id)
        except UnknownUserError:
            own = UserCorpus(user_id, "", [], [], [], [], [], [], [], encoder_id=None)
        others: list[UserCorpus] = []
        for member in members:
            if member == user_id:
                continue
            try:
                others.append(_only_documents(self.corpus(member)))
            except UnknownUserError:  # deleted since it joined the persona
                continue
        key = (
            "group",
            self.store.tenant,
            user_id,
            own.version,
            *((o.user_id, o.version) for o in others),
        )
        cached = self._cache.get(key)
        if isinstance(cached, UserCorpus):
            return cached
        if not len(own) and others:  # nothing of the user's own: the frame comes from a member
            own = dataclasses.replace(_select(others[0], []), user_id=user_id, version=own.version)
        combined = _concatenate(own, others)
        self._cache.put(key, combined)
        return combined

    def _document_rows(self, user_id: str) -> list[DocumentRow]:
        """The user's documents, newest first, each with its stored vector (None if none)."""
        rows: list[DocumentRow] = []
        missing: set[str] = set()
        if self.encoder is not None:
            stored = self.store.document_embeddings(user_id, self.encoder.id)
            timestamps = stored.timestamps
            rows = [
                (
                    stored.ids[i],
                    stored.kinds[i],
                    stored.titles[i],
                    stored.texts[i],
                    timestamps[i],
                    stored.vectors[i],
                )
                for i in range(len(stored))
            ]
            missing = set(stored.missing)
        if self.encoder is None or missing:
            rows += [
                (str(d.id), d.kind, d.title, d.text, d.timestamp, None)
                for d in self.store.documents(user_id)
                if self.encoder is None or d.id in missing
            ]
        rows.sort(key=_newest_first)
        return rows

    def _build(self, user_id: str, version: str) -> UserCorpus:
        rows: list[CorpusRow] = []
        if "documents" in self.sources:
            rows += [
                (doc_id, "document", kind, title, text, moment, vector)
                for doc_id, kind, title, text, moment, vector in self._document_rows(user_id)
            ]
        if "interactions" in self.sources:
            interactions = self.store.interactions(user_id)
            catalog = {i.id: i for i in self.store.items(sorted({x.item_id for x in interactions}))}
            for x in interactions:
                title, text = render_interaction(x, catalog.get(x.item_id))
                rows.append((str(x.id), "interaction", x.kind, title, text, x.timestamp, None))
        if "attributes" in self.sources:
            user = self.store.get_user(user_id) or User(id=user_id)
            for key, value in sorted(user.attributes.items()):
                text = render_attribute(key, value)
                rows.append((f"attribute:{key}", "attribute", "attribute", None, text, None, None))
        corpus = UserCorpus(
            user_id=user_id,
            version=version,
            ids=[row[0] for row in rows],
            sources=[row[1] for row in rows],
            kinds=[row[2] for row in rows],
            titles=[row[3] for row in rows],
            texts=[row[4] for row in rows],
            timestamps=[row[5] for row in rows],
            owners=[user_id] * len(rows),
        )
        if self.encoder is not None:
            dim = self.encoder.dim
            corpus.encoder_id = self.encoder.id
            corpus.vectors = np.zeros((len(rows), dim), dtype=np.float32)
            for position, row in enumerate(rows):
                if row[6] is not None:
                    corpus.vectors[position] = row[6]
            corpus.has_vector = np.array([row[6] is not None for row in rows], dtype=bool)
        return corpus


DocumentRow = tuple[str, str, str | None, str, datetime | None, npt.NDArray[np.float32] | None]
CorpusRow = tuple[str, str, str, str | None, str, datetime | None, npt.NDArray[np.float32] | None]
"""(id, source, kind, title, text, timestamp, stored vector or None)."""


def _newest_first(row: DocumentRow) -> tuple[bool, float, str]:
    moment = row[4]
    return (moment is None, -moment.timestamp() if moment else 0.0, row[0])


def _only_documents(corpus: UserCorpus) -> UserCorpus:
    rows = [i for i, s in enumerate(corpus.sources) if s == "document"]
    return _select(corpus, rows)


def _select(corpus: UserCorpus, rows: list[int]) -> UserCorpus:
    return UserCorpus(
        user_id=corpus.user_id,
        version=corpus.version,
        ids=[corpus.ids[i] for i in rows],
        sources=[corpus.sources[i] for i in rows],
        kinds=[corpus.kinds[i] for i in rows],
        titles=[corpus.titles[i] for i in rows],
        texts=[corpus.texts[i] for i in rows],
        timestamps=[corpus.timestamps[i] for i in rows],
        owners=[corpus.owners[i] for i in rows],
        encoder_id=corpus.encoder_id,
        vectors=None if corpus.vectors is None else corpus.vectors[rows],
        has_vector=None if corpus.has_vector is None else corpus.has_vector[rows],
    )


def _concatenate(own: UserCorpus, others: list[UserCorpus]) -> UserCorpus:
    parts = [own, *others]
    vectors = [p.vectors for p in parts if p.vectors is not None]
    flags = [p.has_vector for p in parts if p.has_vector is not None]
    return UserCorpus(
        user_id=own.user_id,
        version=own.version,
        ids=[i for p in parts for i in p.ids],
        sources=[s for p in parts for s in p.sources],
        kinds=[k for p in parts for k in p.kinds],
        titles=[t for p in parts for t in p.titles],
        texts=[t for p in parts for t in p.texts],
        timestamps=[t for p in parts for t in p.timestamps],
        owners=[o for p in parts for o in p.owners],
        encoder_id=parts[0].encoder_id,
        vectors=np.vstack(vectors) if len(vectors) == len(parts) else None,
        has_vector=np.concatenate(flags) if len(flags) == len(parts) else None,
    )
