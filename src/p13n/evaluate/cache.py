"""The benchmark's generation cache: one SQLite file, keyed by exactly what the model saw.

A key hashes the prompt's messages, the backend and model, and the decoding options, so a rerun
reuses every generation whose prompt is unchanged, and a change anywhere upstream (retriever,
template, budget, the user's data) reaches the model instead of a stale answer.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from p13n.llm import ChatMessage, GenerationOptions

CACHE_FORMAT = 1


@dataclass(frozen=True)
class CachedGeneration:
    """What the runner keeps of one completion."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    model: str
    generate_ms: float
    choice_scores: list[float] | None = None
    """With answers chosen by likelihood: each choice's log-probability, in the choices' order."""


def generation_key(
    messages: Sequence[ChatMessage],
    backend: str,
    model: str,
    options: GenerationOptions,
    choices: Sequence[str] | None = None,
) -> str:
    """The cache key of one prompt for one model under one set of decoding options (or, for an
    answer chosen by likelihood, one list of choices)."""
    payload: dict[str, object] = {
        "format": CACHE_FORMAT,
        "messages": [dict(message) for message in messages],
        "backend": backend,
        "model": model,
        "options": options.model_dump(mode="json"),
    }
    if choices is not None:
        payload["choices"] = list(choices)
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


class GenerationCache:
    """Generations on disk, each committed as soon as it is written (a killed run resumes)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS generations (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )

    def get(self, key: str) -> CachedGeneration | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM generations WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        raw: dict[str, Any] = json.loads(row[0])
        return CachedGeneration(**raw)

    def put(self, key: str, generation: CachedGeneration) -> None:
        value = json.dumps(asdict(generation), ensure_ascii=False)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO generations (key, value) VALUES (?, ?)", (key, value)
            )

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT COUNT(*) FROM generations").fetchone()
        return int(count)

    def close(self) -> None:
        self._db.close()
