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
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from p13n.llm import LLM, ChatMessage, ChoiceScorer, Completion, GenerationOptions

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

    @classmethod
    def of(cls, completion: Completion, generate_ms: float) -> CachedGeneration:
        """What is kept of a generated completion."""
        return cls(
            text=completion.text,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            finish_reason=completion.finish_reason,
            model=completion.model,
            generate_ms=generate_ms,
        )


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


def cached_choice_scores(
    cache: GenerationCache | None,
    llm: LLM,
    messages: Sequence[ChatMessage],
    choices: Sequence[str],
    options: GenerationOptions,
) -> tuple[list[float], bool]:
    """Each choice's log-probability as the whole answer (``ChoiceScorer``), and whether it came
    from the cache; scored ones are kept there under the key of ``options`` and ``choices``."""
    if not isinstance(llm, ChoiceScorer):
        raise TypeError(f"the {llm.backend} backend cannot score choices: use a local model")
    key = generation_key(messages, llm.backend, llm.model, options, choices)
    hit = cache.get(key) if cache is not None else None
    if hit is not None and hit.choice_scores is not None:
        return list(hit.choice_scores), True
    started = time.perf_counter()
    scores = [float(score) for score in llm.score_choices(list(messages), list(choices))]
    if cache is not None:
        elapsed = (time.perf_counter() - started) * 1000
        cache.put(key, CachedGeneration("", 0, 0, "scored", llm.model, elapsed, scores))
    return scores, False
