"""Batched generation on the real embedded model: the same answers as one ``generate`` each."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import ClassVar

import pytest

from p13n.llm import LLM, BatchGenerator, ChatMessage, Completion, GenerationOptions, generate_many
from p13n.llm.hf import HFLLM

CONVERSATIONS: list[list[ChatMessage]] = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "Name a fruit."},
        {"role": "assistant", "content": "An apple."},
        {"role": "user", "content": "Name two more, and say which colour each one is."},
    ],
    [{"role": "user", "content": "Hi"}],
]
GREEDY = GenerationOptions(max_new_tokens=12)


@pytest.fixture(scope="module")
def model(embedded_llm: LLM) -> HFLLM:
    assert isinstance(embedded_llm, HFLLM)
    return embedded_llm


@pytest.fixture(scope="module")
def one_by_one(model: HFLLM) -> list[Completion]:
    return [model.generate(messages, GREEDY) for messages in CONVERSATIONS]


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [8, 2, 1])
def test_batch_gives_each_conversation_its_own_answer_in_order(
    model: HFLLM, one_by_one: list[Completion], batch_size: int
) -> None:
    # The prompts differ in length, so all but the longest of a batch are padded.
    assert len({answer.prompt_tokens for answer in one_by_one}) == len(CONVERSATIONS)
    batched = model.generate_batch(CONVERSATIONS, GREEDY, batch_size=batch_size)
    assert [answer.prompt_tokens for answer in batched] == [a.prompt_tokens for a in one_by_one]
    assert [answer.text for answer in batched] == [answer.text for answer in one_by_one]
    assert batched == one_by_one  # token counts and finish reasons too


@pytest.mark.slow
def test_batch_cuts_each_answer_where_generate_stops_it(model: HFLLM) -> None:
    options = GenerationOptions(max_new_tokens=40, stop=(",", "\n"))
    expected = [model.generate(messages, options) for messages in CONVERSATIONS]
    assert any(answer.finish_reason == "stop" for answer in expected)
    assert model.generate_batch(CONVERSATIONS, options, batch_size=3) == expected


@pytest.mark.slow
def test_no_conversations_give_no_answers(model: HFLLM) -> None:
    assert model.generate_batch([], GREEDY) == []
    with pytest.raises(ValueError, match="batch_size"):
        model.generate_batch(CONVERSATIONS, GREEDY, batch_size=0)


class OneAtATime:
    """A backend without ``generate_batch`` (like a chat server): the embedded model, one
    conversation per call."""

    supports_streaming: ClassVar[bool] = True

    def __init__(self, model: HFLLM) -> None:
        self.inner = model
        self.backend, self.model = "one-at-a-time", model.model
        self.context_window, self.tokenizer = model.context_window, model.tokenizer
        self.calls = 0

    def generate(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> Completion:
        self.calls += 1
        return self.inner.generate(messages, options)

    def stream(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> Iterator[str]:
        return self.inner.stream(messages, options)


@pytest.mark.slow
def test_generate_many_batches_only_where_the_backend_can(
    model: HFLLM, one_by_one: list[Completion]
) -> None:
    assert isinstance(model, BatchGenerator)
    assert generate_many(model, CONVERSATIONS, GREEDY, batch_size=2) == one_by_one
    plain = OneAtATime(model)
    assert isinstance(plain, LLM) and not isinstance(plain, BatchGenerator)
    assert generate_many(plain, CONVERSATIONS, GREEDY) == one_by_one
    assert plain.calls == len(CONVERSATIONS)
