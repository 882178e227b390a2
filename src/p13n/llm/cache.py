"""The generation cache, and ``CachedLLM``: any ``LLM`` answering through it.

A key hashes the prompt's messages, the backend and model, and the decoding options (and, for an
answer chosen by likelihood, the choices), so a rerun reuses every generation whose prompt is
unchanged, and a change anywhere upstream (retriever, template, budget, the user's data, the
adapter in use) reaches the model instead of a stale answer.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from p13n.llm.base import LLM, ChatMessage, ChoiceScorer, Completion, GenerationOptions, Tokenizer

CACHE_FORMAT = 1


@dataclass(frozen=True)
class CachedGeneration:
    """What the cache keeps of one answer."""

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

    def completion(self) -> Completion:
        """The answer as the ``LLM`` protocol returns it."""
        return Completion(
            text=self.text,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            finish_reason=self.finish_reason,
            model=self.model,
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
        "options": _keyed_options(options),
    }
    if choices is not None:
        payload["choices"] = list(choices)
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def _keyed_options(options: GenerationOptions) -> dict[str, object]:
    """The options in a cache key: each decoding-time field only when set, so that keys of
    answers decoded without it stay what they were before the field existed."""
    unset: set[str] = set()
    if options.contrast is None:
        unset |= {"contrast", "steering"}
    if options.adapter_contrast == 0:
        unset.add("adapter_contrast")
    if options.vector_strength == 0:
        unset.add("vector_strength")
    return options.model_dump(mode="json", exclude=unset)


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


def answer_one(
    llm: LLM,
    messages: Sequence[ChatMessage],
    options: GenerationOptions,
    choices: Sequence[str] | None = None,
) -> CachedGeneration:
    """One answer, timed, without the cache: generated, or (given ``choices``) the choice the
    model finds most likely, with every choice's score."""
    started = time.perf_counter()
    if choices is not None:
        if not isinstance(llm, ChoiceScorer):
            raise TypeError(f"the {llm.backend} backend cannot score choices: use a local model")
        scores = llm.score_choices(list(messages), choices)
        best = max(range(len(choices)), key=lambda i: scores[i])  # first of equal scores
        return CachedGeneration(
            text=choices[best],
            prompt_tokens=llm.tokenizer.count_chat(list(messages)),
            completion_tokens=0,
            finish_reason="choice",
            model=llm.model,
            generate_ms=(time.perf_counter() - started) * 1000,
            choice_scores=scores,
        )
    completion = llm.generate(list(messages), options)
    return CachedGeneration.of(completion, (time.perf_counter() - started) * 1000)


@dataclass(frozen=True)
class CachedAnswer:
    """One answer, and whether it was made now (False: read back from the cache)."""

    generation: CachedGeneration
    fresh: bool


Progress = Callable[[int], None]
"""Called with how many more prompts are answered."""


class CachedLLM:
    """An ``LLM`` that answers from the generation cache when it can, and keeps what it makes.

    The key names ``llm.model`` as it is at each call, so a model whose name follows its state
    (an adapted model names its active adapter or soft prompt) keeps each state's answers apart.
    With ``choices``, ``generate`` answers with the choice the model finds most likely (the
    answer a label task is scored on). ``cache=None`` answers everything anew."""

    supports_streaming: ClassVar[bool] = True

    def __init__(
        self,
        llm: LLM,
        cache: GenerationCache | None,
        *,
        choices: Sequence[str] | None = None,
    ) -> None:
        self.llm, self.cache = llm, cache
        self.choices = None if choices is None else tuple(choices)
        self.generated = 0
        self.reused = 0
        self.last: CachedAnswer | None = None
        """The latest answer of ``generate`` or ``answer``."""

    @property
    def backend(self) -> str:
        return self.llm.backend

    @property
    def model(self) -> str:
        return self.llm.model

    @property
    def context_window(self) -> int:
        return self.llm.context_window

    @property
    def tokenizer(self) -> Tokenizer:
        return self.llm.tokenizer

    def key(
        self,
        messages: Sequence[ChatMessage],
        options: GenerationOptions,
        choices: Sequence[str] | None = None,
    ) -> str:
        """The cache key of this prompt for the model as it is now."""
        return generation_key(messages, self.llm.backend, self.llm.model, options, choices)

    def cached(self, key: str) -> CachedGeneration | None:
        return self.cache.get(key) if self.cache is not None else None

    def keep(self, key: str, generation: CachedGeneration) -> None:
        """Keep an answer made elsewhere (another process's copy of the model) under ``key``."""
        if self.cache is not None:
            self.cache.put(key, generation)

    def answer(
        self,
        messages: Sequence[ChatMessage],
        options: GenerationOptions,
        choices: Sequence[str] | None = None,
    ) -> CachedAnswer:
        """The cached answer to this prompt, else a new one (kept in the cache)."""
        key = self.key(messages, options, choices)
        hit = self.cached(key)
        if hit is not None:
            self.reused += 1
            self.last = CachedAnswer(hit, fresh=False)
        else:
            made = answer_one(self.llm, messages, options, choices)
            self.keep(key, made)
            self.generated += 1
            self.last = CachedAnswer(made, fresh=True)
        return self.last

    def generate(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> Completion:
        return self.answer(messages, options, self.choices).generation.completion()

    def stream(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> Iterator[str]:
        """The (cached) answer in one piece."""
        yield self.generate(messages, options).text

    def generate_batch(
        self,
        conversations: Sequence[Sequence[ChatMessage]],
        options: GenerationOptions,
        *,
        batch_size: int = 8,
        chunk: int | None = None,
        progress: Progress | None = None,
    ) -> list[Completion]:
        """One free answer per conversation, in order: cached ones read back, the others
        generated ``batch_size`` per forward pass where the backend can batch, ``chunk`` at a
        time (None: all at once); ``progress`` hears of the cached ones first, then each
        chunk."""
        from p13n.llm.base import generate_many

        answers: list[Completion | None] = [None] * len(conversations)
        keys = [self.key(messages, options) for messages in conversations]
        missing: list[int] = []
        for n, key in enumerate(keys):
            hit = self.cached(key)
            if hit is None:
                missing.append(n)
            else:
                answers[n] = hit.completion()
                self.reused += 1
        if progress and len(conversations) > len(missing):
            progress(len(conversations) - len(missing))
        step = chunk or max(len(missing), 1)
        for start in range(0, len(missing), step):
            part = missing[start : start + step]
            started = time.perf_counter()
            made = generate_many(
                self.llm, [conversations[n] for n in part], options, batch_size=batch_size
            )
            each_ms = (time.perf_counter() - started) * 1000 / len(part)
            for n, completion in zip(part, made, strict=True):
                answers[n] = completion
                self.keep(keys[n], CachedGeneration.of(completion, each_ms))
            self.generated += len(part)
            if progress:
                progress(len(part))
        assert all(answer is not None for answer in answers)  # each was read back or made
        return [answer for answer in answers if answer is not None]

    def choice_scores(
        self,
        messages: Sequence[ChatMessage],
        choices: Sequence[str],
        options: GenerationOptions,
    ) -> tuple[list[float], bool]:
        """Each choice's log-probability as the whole answer, and whether it came from the
        cache; scored ones are kept under the key of ``options`` and ``choices``."""
        if not isinstance(self.llm, ChoiceScorer):
            raise TypeError(
                f"the {self.llm.backend} backend cannot score choices: use a local model"
            )
        key = self.key(messages, options, choices)
        hit = self.cached(key)
        if hit is not None and hit.choice_scores is not None:
            self.reused += 1
            return list(hit.choice_scores), True
        started = time.perf_counter()
        scores = [float(score) for score in self.llm.score_choices(list(messages), list(choices))]
        elapsed = (time.perf_counter() - started) * 1000
        self.keep(key, CachedGeneration("", 0, 0, "scored", self.llm.model, elapsed, scores))
        self.generated += 1
        return scores, False


def cached_choice_scores(
    cache: GenerationCache | None,
    llm: LLM,
    messages: Sequence[ChatMessage],
    choices: Sequence[str],
    options: GenerationOptions,
) -> tuple[list[float], bool]:
    """``CachedLLM.choice_scores`` for a single prompt."""
    return CachedLLM(llm, cache).choice_scores(messages, choices, options)
