"""OpenAI's response objects, as both the service and ``llm_api`` send them: the model list and
a ``chat.completion`` (streams send ``chat.completion.chunk`` events, which have no schema)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from p13n.llm import Completion


class OpenAIOut(BaseModel):
    """A response object in OpenAI's shape: its fields in the order they are sent."""

    model_config = ConfigDict(extra="forbid")


class ModelOut(OpenAIOut):
    id: str
    object: Literal["model"] = "model"
    owned_by: str


class ModelsOut(OpenAIOut):
    """The models the service answers with (``/v1/models``)."""

    object: Literal["list"] = "list"
    data: list[ModelOut]


class ServedModelOut(OpenAIOut):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ServedModelsOut(OpenAIOut):
    """The model an ``llm_api`` server serves."""

    object: Literal["list"] = "list"
    data: list[ServedModelOut]


class AssistantMessageOut(OpenAIOut):
    role: Literal["assistant"] = "assistant"
    content: str


class ChoiceOut(OpenAIOut):
    index: int
    message: AssistantMessageOut
    finish_reason: str
    """``stop`` or ``length`` (as the backend reports it)."""


class UsageOut(OpenAIOut):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletionOut(OpenAIOut):
    """OpenAI's ``chat.completion`` object."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChoiceOut]
    usage: UsageOut

    @classmethod
    def of(cls, completion_id: str, created: int, completion: Completion) -> ChatCompletionOut:
        """The object for ``completion``: one choice, and its token counts."""
        return cls(
            id=completion_id,
            created=created,
            model=completion.model,
            choices=[
                ChoiceOut(
                    index=0,
                    message=AssistantMessageOut(content=completion.text),
                    finish_reason=completion.finish_reason,
                )
            ],
            usage=UsageOut(
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
                total_tokens=completion.prompt_tokens + completion.completion_tokens,
            ),
        )
