"""What a personalized answer carries: the ``Trace`` of every step that shaped it, its
``Timings``, the ``Generation`` itself, and the ``PreparedPrompt`` (with its ``PartialTrace``)
that ``Personalizer.prepare`` hands to ``complete``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from p13n.llm import ChatMessage, Completion, GenerationOptions
from p13n.personalize.router import Route
from p13n.prompt import Prompt
from p13n.retrieve import Retrieved


@dataclass(frozen=True)
class Timings:
    """Milliseconds per step; ``overhead_ms`` is everything but the model's own generation."""

    query_ms: float
    retrieve_ms: float
    prompt_ms: float
    generate_ms: float
    total_ms: float

    @property
    def overhead_ms(self) -> float:
        return self.total_ms - self.generate_ms


@dataclass(frozen=True)
class Trace:
    """Why an output is what it is: the query, what was retrieved (with scores and ids), the
    exact prompt, the model that answered, and how long each step took."""

    user_id: str
    personalized: bool
    task: str
    query: str | None
    query_generator: str | None
    retriever: str | None
    retrieved: Retrieved | None
    data_version: str
    prompt: Prompt
    backend: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    profile_refreshed: bool | None
    timings: Timings
    granularity: Route | None = None
    """The level that served (user, persona, global, none) and why; None when not personalized."""
    adapter: dict[str, Any] | None = None
    """The learned user's adapter that answered (id, method, weights sha256, swap ms)."""
    abstained: str | None = None
    """Why a personalized request got the non-personalized prompt (nothing relevant found)."""
    policy: dict[str, Any] | None = None
    """With ``policy="auto"``: the learned policy that chose the settings, and its dev evidence."""
    decoding: dict[str, Any] | None = None
    """Decoding-time personalization that shaped the answer (method, strength); None: standard."""
    fallback: str | None = None
    """Why the learned policy's fallback served this user (no adapter of the kind it needs)."""
    refined: dict[str, Any] | None = None
    """The refined instruction that framed the input (advice, level, scores, budget spent), or
    why the task's own instruction did (too little data)."""

    def to_dict(self) -> dict[str, Any]:
        plain: dict[str, Any] = _jsonable(dataclasses.asdict(self))
        return plain


@dataclass(frozen=True)
class Generation:
    text: str
    trace: Trace

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "trace": self.trace.to_dict()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


@dataclass(frozen=True)
class PartialTrace:
    """What ``Personalizer.prepare`` learned for the trace, before the model answers: ``Trace``
    without the prompt, the model's side and the timings."""

    user_id: str
    personalized: bool
    task: str
    query: str | None
    query_generator: str | None
    retriever: str | None
    retrieved: Retrieved | None
    data_version: str
    profile_refreshed: bool | None
    granularity: Route | None
    abstained: str | None = None
    policy: dict[str, Any] | None = None
    decoding: dict[str, Any] | None = None
    fallback: str | None = None
    refined: dict[str, Any] | None = None

    def finished(
        self,
        *,
        prompt: Prompt,
        backend: str,
        completion: Completion,
        timings: Timings,
        adapter: dict[str, Any] | None,
    ) -> Trace:
        """The whole trace, once ``completion`` answered ``prompt``."""
        return Trace(
            user_id=self.user_id,
            personalized=self.personalized,
            task=self.task,
            query=self.query,
            query_generator=self.query_generator,
            retriever=self.retriever,
            retrieved=self.retrieved,
            data_version=self.data_version,
            prompt=prompt,
            backend=backend,
            model=completion.model,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            finish_reason=completion.finish_reason,
            profile_refreshed=self.profile_refreshed,
            timings=timings,
            granularity=self.granularity,
            adapter=adapter,
            abstained=self.abstained,
            policy=self.policy,
            decoding=self.decoding,
            fallback=self.fallback,
            refined=self.refined,
        )


@dataclass(frozen=True)
class PreparedPrompt:
    """A prompt ready for the model, with the trace and timings gathered so far."""

    prompt: Prompt
    trace: PartialTrace
    query_ms: float
    retrieve_ms: float
    prompt_ms: float
    ready_at: float
    started_at: float
    text: str = ""
    """The input the prompt was built for (a user embedding is pooled against it)."""
    personalize: bool = True
    """False: the baseline was asked for (no adapter either)."""
    contrast: tuple[ChatMessage, ...] | None = None
    """Context steering: the same request's prompt without the user's data."""
    steering: float = 0.0
    """The decoding-time method's strength (0: standard decoding)."""
    strength_option: str | None = None
    """The ``GenerationOptions`` field that carries ``steering`` (``DecodingMethod.option``)."""

    def options(self, base: GenerationOptions) -> GenerationOptions:
        """``base`` with this prompt's decoding-time personalization, if any."""
        if self.strength_option is None:
            return base
        update: dict[str, Any] = {self.strength_option: self.steering}
        if self.contrast is not None:
            update["contrast"] = self.contrast
        return base.model_copy(update=update)

    @property
    def trace_fields(self) -> dict[str, Any]:
        """``trace``'s fields by name (read-only; for callers that look them up by name)."""
        return {f.name: getattr(self.trace, f.name) for f in dataclasses.fields(self.trace)}
