"""Ingest: validate a whole batch, embed what is new, write it in one transaction.

A batch is everything one loader call yields (one file or folder). Any invalid record stops the
batch with an ``IngestError`` naming it, before anything is written. Re-ingesting the same data
writes nothing; records whose content changed are updated and re-embedded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from p13n.data import Document, Interaction, Item, Persona, Preference, Record, Sourced, User
from p13n.encode import Encoder
from p13n.errors import IngestError
from p13n.store import RecordStore, WriteSet
from p13n.store.base import Vector

Progress = Callable[[str, int, int], None]
"""Called as progress(stage, done, total) while a batch is embedded."""

_TYPES: tuple[type[Record], ...] = (User, Document, Interaction, Preference, Item, Persona)
_PER_USER = {"document", "interaction"}


@dataclass
class TypeCounts:
    added: int = 0
    updated: int = 0
    unchanged: int = 0


@dataclass
class IngestReport:
    """What one batch changed, per record type, and how long it took."""

    counts: dict[str, TypeCounts] = field(default_factory=dict)
    embedded: int = 0
    users_referenced: int = 0
    """Users named by records of the batch (created with no attributes when new)."""
    encoder_id: str | None = None
    seconds: float = 0.0

    @property
    def written(self) -> int:
        return sum(c.added + c.updated for c in self.counts.values())

    @property
    def records(self) -> int:
        return sum(c.added + c.updated + c.unchanged for c in self.counts.values())


def _key(record: Record) -> Any:
    if record.record_type in _PER_USER:
        return (record.user_id, record.id)  # type: ignore[attr-defined]
    return record.id


def _collect(sourced: Iterable[Sourced]) -> dict[str, dict[Any, Sourced]]:
    """Group by type and key; the same key twice is fine only with the same content."""
    batch: dict[str, dict[Any, Sourced]] = {cls.record_type: {} for cls in _TYPES}
    for entry in sourced:
        records = batch[entry.record.record_type]
        key = _key(entry.record)
        seen = records.get(key)
        if seen is None:
            records[key] = entry
        elif seen.record.content_hash != entry.record.content_hash:
            where = seen.source if seen.line is None else f"{seen.source}:{seen.line}"
            raise IngestError(
                entry.source,
                entry.line,
                "id",
                f"{entry.record.record_type} {entry.record.id!r} appears twice in this batch "
                f"with different content (first at {where})",
            )
    return batch


def _implicit_users(batch: dict[str, dict[Any, Sourced]]) -> list[str]:
    referenced: set[str] = set()
    for kind in ("document", "interaction", "preference"):
        for entry in batch[kind].values():
            user_id = entry.record.user_id  # type: ignore[attr-defined]
            if user_id is not None:
                referenced.add(user_id)
    for entry in batch["persona"].values():
        referenced.update(entry.record.members)  # type: ignore[attr-defined]
    return sorted(referenced - set(batch["user"]))


def ingest(
    store: RecordStore,
    sourced: Iterable[Sourced],
    *,
    encoder: Encoder | None,
    progress: Progress | None = None,
) -> IngestReport:
    """Ingest one batch into ``store``; with an ``encoder``, embed new or changed texts."""
    started = time.perf_counter()
    batch = _collect(sourced)
    report = IngestReport(encoder_id=encoder.id if encoder else None)
    changed: dict[str, list[Record]] = {}
    for kind, records in batch.items():
        stored = store.content_hashes(kind, records.keys()) if records else {}
        counts = report.counts.setdefault(kind, TypeCounts())
        changed[kind] = []
        for key, entry in records.items():
            digest = stored.get(key)
            if digest == entry.record.content_hash:
                counts.unchanged += 1
                continue
            if digest is None:
                counts.added += 1
            else:
                counts.updated += 1
            changed[kind].append(entry.record)

    document_vectors: dict[tuple[str, str], Vector] = {}
    item_vectors: dict[str, Vector] = {}
    if encoder is not None:
        documents = _needing_vectors(store, "document", batch, changed, encoder.id)
        items = _needing_vectors(store, "item", batch, changed, encoder.id)
        texts = [d.embedding_text for d in documents] + [i.embedding_text for i in items]  # type: ignore[attr-defined]
        vectors = _encode(encoder, texts, progress)
        document_vectors = {_key(d): vectors[n] for n, d in enumerate(documents)}
        item_vectors = {i.id: vectors[len(documents) + n] for n, i in enumerate(items)}  # type: ignore[misc]
        report.embedded = len(texts)

    implicit_user_ids = _implicit_users(batch)
    report.users_referenced = len(implicit_user_ids)
    store.write(
        WriteSet(
            users=changed["user"],  # type: ignore[arg-type]
            implicit_user_ids=implicit_user_ids,
            documents=changed["document"],  # type: ignore[arg-type]
            interactions=changed["interaction"],  # type: ignore[arg-type]
            preferences=changed["preference"],  # type: ignore[arg-type]
            items=changed["item"],  # type: ignore[arg-type]
            personas=changed["persona"],  # type: ignore[arg-type]
            encoder_id=encoder.id if encoder else None,
            document_vectors=document_vectors,
            item_vectors=item_vectors,
        )
    )
    report.seconds = time.perf_counter() - started
    return report


def _needing_vectors(
    store: RecordStore,
    kind: str,
    batch: dict[str, dict[Any, Sourced]],
    changed: dict[str, list[Record]],
    encoder_id: str,
) -> list[Record]:
    """Changed records, plus unchanged ones that have no vector from this encoder yet."""
    fresh = {_key(r) for r in changed[kind]}
    unchanged = [key for key in batch[kind] if key not in fresh]
    have = store.embedded(kind, unchanged, encoder_id) if unchanged else set()
    return changed[kind] + [batch[kind][key].record for key in unchanged if key not in have]


def _encode(encoder: Encoder, texts: list[str], progress: Progress | None) -> list[Vector]:
    """Encode each distinct text once, longest first, in chunks that report progress.

    One global length order keeps padding low in every chunk (the encoder sorts only within a
    call); identical texts (short reviews repeat across users) are encoded once.
    """
    import numpy as np

    distinct = sorted(set(texts), key=len, reverse=True)
    step = 512
    parts = []
    for start in range(0, len(distinct), step):
        parts.append(encoder.encode(distinct[start : start + step]))
        if progress is not None:
            progress("embed", min(start + step, len(distinct)), len(distinct))
    if not parts:
        return []
    vectors = np.concatenate(parts)
    row = {text: n for n, text in enumerate(distinct)}
    return [vectors[row[text]] for text in texts]
