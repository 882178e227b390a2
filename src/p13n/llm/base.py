"""The ``LLM`` protocol: chat messages in, a completion out, with the model's own token counts."""

from __future__ import annotations

from collections.abc import Container, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict  # pydantic validates only these on Python < 3.12

from p13n.errors import LLMError


class ChatMessage(TypedDict):
    role: Literal["system", "user", "assistant"]
    content: str


class GenerationOptions(BaseModel):
    """Decoding settings. Greedy (temperature 0) by default, so results are reproducible."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_new_tokens: int = Field(128, gt=0, le=8192)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int = 0
    stop: tuple[str, ...] = ()
    contrast: tuple[ChatMessage, ...] | None = Field(
        None,
        description="context steering (CoS, He et al. 2025): the same request's prompt without "
        "the user's data; each token is chosen from with + steering * (with - without) "
        "next-token log-probabilities. Local backends only",
    )
    steering: float = Field(
        0.0, ge=0.0, le=50.0, description="the context-steering strength λ (0: the prompt alone)"
    )
    adapter_contrast: float = Field(
        0.0,
        ge=0.0,
        le=50.0,
        description="contrastive decoding with the user's adapter (CoPe): each token chosen from "
        "adapter + β (adapter - base) next-token log-probabilities, β this; needs an active LoRA "
        "adapter (torch backends)",
    )
    vector_strength: float = Field(
        0.0,
        ge=-50.0,
        le=50.0,
        description="the strength α with which the active steering vector is added to its "
        "layer's output (StyleVector); needs an active steering vector (torch backends)",
    )


def refuse_adapter_steering(options: GenerationOptions, model: str) -> None:
    """An ``LLMError`` when ``options`` steer by a user's adapter or steering vector, which only
    a torch model with one active can (``p13n.adapt.runtime.AdaptedLLM``)."""
    if options.adapter_contrast > 0 or options.vector_strength != 0:
        what = "adapter_contrast (CoPe)" if options.adapter_contrast > 0 else "vector_strength"
        raise LLMError(
            f"{model}: {what} steers by the user's active adapter or steering vector, which "
            "only the torch backends ('embedded', 'hf') with one activated can: use a "
            "Personalizer with adapter and decoding set"
        )


def steered_log_probs(own: Any, without: Any, strength: float) -> Any:
    """Context steering's next-token scores: ``own + strength * (own - without)`` over the
    log-softmax of each prompt's logits (numpy arrays, last axis the vocabulary). Log-probs
    rather than raw logits, as transformers' classifier-free guidance does; for the choice of
    the next token the two differ by a constant."""
    from scipy.special import log_softmax

    own, without = log_softmax(own, axis=-1), log_softmax(without, axis=-1)
    return own + strength * (own - without)


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    """``stop`` (end of answer or a stop string) or ``length`` (max_new_tokens reached)."""
    model: str


@runtime_checkable
class Tokenizer(Protocol):
    """Token counting as a model sees it, for fitting prompts into its context."""

    @property
    def name(self) -> str: ...

    def count(self, text: str) -> int: ...

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest prefix of ``text`` that is at most ``max_tokens`` tokens."""
        ...

    def count_chat(self, messages: Sequence[ChatMessage]) -> int:
        """Tokens of the whole prompt the model receives, chat template included."""
        ...


@runtime_checkable
class LLM(Protocol):
    """A chat model. ``backend`` names the implementation, ``model`` the exact model it runs."""

    supports_streaming: ClassVar[bool]

    @property
    def backend(self) -> str: ...

    @property
    def model(self) -> str: ...

    @property
    def context_window(self) -> int:
        """Tokens the model attends to: prompt and completion together."""
        ...

    @property
    def tokenizer(self) -> Tokenizer: ...

    def generate(
        self, messages: Sequence[ChatMessage], options: GenerationOptions
    ) -> Completion: ...

    def stream(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> Iterator[str]:
        """The completion's text in pieces as they are decoded."""
        ...


def local_completion(
    text: str,
    new_tokens: Sequence[int],
    eos: Container[int],
    *,
    prompt_tokens: int,
    options: GenerationOptions,
    model: str,
) -> Completion:
    """The completion of a local model's ``new_tokens`` (decoded to ``text``): cut at the first
    stop string; ``stop`` when a stop string, an end token or a short answer ended it."""
    text, stopped = cut_at_stop(text, options.stop)
    ended = len(new_tokens) > 0 and new_tokens[-1] in eos
    hit_limit = len(new_tokens) >= options.max_new_tokens
    return Completion(
        text=text.strip(),
        prompt_tokens=prompt_tokens,
        completion_tokens=len(new_tokens),
        finish_reason="stop" if stopped or ended or not hit_limit else "length",
        model=model,
    )


def streamed_finish_reason(completion_tokens: int, options: GenerationOptions) -> str:
    """Why a streamed answer of ``completion_tokens`` (its text re-tokenized) ended. A stream
    does not say: an answer as long as the limit was cut by it; a stop string or the end of the
    answer ends a stream short of the limit."""
    return "length" if completion_tokens >= options.max_new_tokens else "stop"


@runtime_checkable
class ChoiceScorer(Protocol):
    """A model that can score fixed answers (log-probabilities), not only generate: local
    transformers models can; an OpenAI-compatible chat server cannot."""

    def score_choices(
        self, messages: Sequence[ChatMessage], choices: Sequence[str]
    ) -> list[float]: ...


@runtime_checkable
class BatchGenerator(Protocol):
    """A model that generates for many conversations at once (local transformers models)."""

    def generate_batch(
        self,
        conversations: Sequence[Sequence[ChatMessage]],
        options: GenerationOptions,
        *,
        batch_size: int = 8,
    ) -> list[Completion]: ...


def generate_many(
    llm: LLM,
    conversations: Sequence[Sequence[ChatMessage]],
    options: GenerationOptions,
    *,
    batch_size: int = 8,
) -> list[Completion]:
    """One completion per conversation, in order: batched where the backend can batch
    (``BatchGenerator``), else one ``generate`` call each, which is how such a backend works."""
    if isinstance(llm, BatchGenerator):
        return llm.generate_batch(conversations, options, batch_size=batch_size)
    return [llm.generate(messages, options) for messages in conversations]


@dataclass(frozen=True)
class CharTokenizer:
    """An explicit estimate for servers whose tokenizer is not available locally: one token per
    ``bytes_per_token`` bytes of UTF-8, rounded up. 3 is conservative for English BPE (about 4
    characters a token) and for scripts of 3-byte characters such as CJK (about one a token)."""

    bytes_per_token: int = 3
    per_message: int = 8
    name: str = "utf8-bytes/3"

    def count(self, text: str) -> int:
        return -(-len(text.encode("utf-8")) // self.bytes_per_token)

    def truncate(self, text: str, max_tokens: int) -> str:
        cut = text.encode("utf-8")[: max(0, max_tokens) * self.bytes_per_token]
        return cut.decode("utf-8", errors="ignore")

    def count_chat(self, messages: Sequence[ChatMessage]) -> int:
        return sum(self.count(m["content"]) + self.per_message for m in messages) + self.per_message


def until_stop(pieces: Iterable[str], stop: Sequence[str]) -> Iterator[str]:
    """Pass pieces through up to the first stop string, holding back any tail that could be
    the start of one (a stop string can span two pieces)."""
    emitted = held = ""
    for piece in pieces:
        if not piece:
            continue
        held += piece
        cut, stopped = cut_at_stop(emitted + held, stop)
        if stopped:
            if len(cut) > len(emitted):
                yield cut[len(emitted) :]
            return
        keep = max((_open_prefix(held, s) for s in stop if s), default=0)
        ready = held[: len(held) - keep]
        if ready:
            yield ready
            emitted += ready
        held = held[len(ready) :]
    if held:
        yield held


def _open_prefix(text: str, stop: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``stop``."""
    for size in range(min(len(text), len(stop) - 1), 0, -1):
        if text.endswith(stop[:size]):
            return size
    return 0


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to its first stop string, and whether one was found."""
    positions = [text.find(s) for s in stop if s and s in text]
    return (text[: min(positions)], True) if positions else (text, False)
