"""A case's own history as text vectors, for the indirect predictors: each text encoded once
(``EmbeddingTable``), and a case's history ranked by similarity to its target
(``SimilarHistory``)."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from p13n.encode import Encoder
from p13n.predict.base import Case, Floats, History, Progress


class EmbeddingTable:
    """Texts embedded once each (deduplicated, batched), kept in memory and, with ``cache``, in
    a SQLite file keyed by the encoder's id and the text so reruns encode nothing."""

    def __init__(
        self,
        encoder: Encoder,
        *,
        cache: Path | None = None,
        batch_size: int = 64,
        progress: Progress | None = None,
    ) -> None:
        self.encoder = encoder
        self.batch_size = batch_size
        self.progress = progress
        self.encoded = 0
        self._index: dict[str, int] = {}
        self._pending: list[npt.NDArray[np.float32]] = []
        self._matrix = np.zeros((0, encoder.dim), dtype=np.float32)
        self._db: sqlite3.Connection | None = None
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(cache, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vector BLOB NOT NULL)"
            )

    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{self.encoder.id}\n{text}".encode()).hexdigest()

    def _append(self, texts: Sequence[str], vectors: npt.NDArray[np.float32]) -> None:
        for text in texts:
            self._index[text] = len(self._index)
        self._pending.append(vectors.astype(np.float32, copy=False))

    def _cached(self, texts: list[str]) -> list[str]:
        """Load what the disk cache has; return the texts still to encode."""
        if self._db is None or not texts:
            return texts
        keys = {self._key(text): text for text in texts}
        found: dict[str, npt.NDArray[np.float32]] = {}
        key_list = list(keys)
        for start in range(0, len(key_list), 500):
            chunk = key_list[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, blob in self._db.execute(
                f"SELECT key, vector FROM vectors WHERE key IN ({marks})", chunk
            ):
                vector = np.frombuffer(blob, dtype=np.float32)
                if vector.size == self.encoder.dim:
                    found[keys[key]] = vector
        if found:
            names = list(found)
            self._append(names, np.stack([found[name] for name in names]))
        return [text for text in texts if text not in found]

    def add(self, texts: Iterable[str]) -> None:
        """Embed every text not embedded yet."""
        missing = self._cached(list(dict.fromkeys(t for t in texts if t not in self._index)))
        for start in range(0, len(missing), self.batch_size):
            batch = missing[start : start + self.batch_size]
            vectors = np.asarray(self.encoder.encode(batch), dtype=np.float32)
            self._append(batch, vectors)
            self.encoded += len(batch)
            if self._db is not None:
                self._db.executemany(
                    "INSERT OR REPLACE INTO vectors (key, vector) VALUES (?, ?)",
                    [(self._key(t), v.tobytes()) for t, v in zip(batch, vectors, strict=True)],
                )
            if self.progress is not None:
                self.progress("embedding", start + len(batch), len(missing))

    @property
    def matrix(self) -> npt.NDArray[np.float32]:
        """Every embedded text's vector, one row each (row numbers from ``rows``)."""
        if self._pending:
            self._matrix = np.concatenate([self._matrix, *self._pending])
            self._pending = []
        return self._matrix

    def rows(self, texts: Sequence[str]) -> npt.NDArray[np.intp]:
        """Row numbers of ``texts`` in ``matrix`` (embedding any that are new)."""
        self.add(texts)
        return np.fromiter((self._index[t] for t in texts), dtype=np.intp, count=len(texts))

    def vectors(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """The L2-normalised vector of each text."""
        return self.matrix[self.rows(texts)]

    def close(self) -> None:
        """Close the disk cache, if any."""
        if self._db is not None:
            self._db.close()
            self._db = None


class SimilarHistory:
    """The history items of a case, most similar to its target first (cosine of embeddings)."""

    def __init__(self, table: EmbeddingTable) -> None:
        self.table = table
        # keyed by the history itself (identity): a user's cases share one, looked up once
        self._rows: dict[History[Any], npt.NDArray[np.intp]] = {}

    def __call__(self, case: Case[Any]) -> tuple[Floats, npt.NDArray[np.intp]]:
        """(similarities in decreasing order, the history positions they belong to)."""
        if not case.history.texts:
            return np.zeros(0), np.zeros(0, dtype=np.intp)
        key = case.history
        if key not in self._rows:
            self._rows[key] = self.table.rows(case.history.texts)
        target_row = self.table.rows([case.text])[0]
        matrix = self.table.matrix  # after every lookup: a lookup may embed a new text
        target = matrix[target_row]
        sims = (matrix[self._rows[key]] @ target).astype(np.float64)
        order = np.argsort(-sims, kind="stable")
        return sims[order], order
