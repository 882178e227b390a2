"""An OpenAI-compatible chat-completions server for any p13n ``LLM`` (the embedded model by
default): ``GET /v1/models`` and ``POST /v1/chat/completions``, streaming included."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from p13n.errors import LLMError
from p13n.llm import LLM, ChatMessage, GenerationOptions
from p13n.llm.base import streamed_finish_reason
from p13n.server.schemas.chat import ChatCompletionOut, ServedModelOut, ServedModelsOut


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(BaseModel):
    """The subset of OpenAI's request this server honours; other fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, gt=0, le=8192)
    max_completion_tokens: int | None = Field(None, gt=0, le=8192)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False

    def options(self) -> GenerationOptions:
        stop = [self.stop] if isinstance(self.stop, str) else (self.stop or [])
        return GenerationOptions(
            max_new_tokens=self.max_completion_tokens or self.max_tokens or 256,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed or 0,
            stop=tuple(stop),
        )

    def chat(self) -> list[ChatMessage]:
        return [ChatMessage(role=m.role, content=m.content) for m in self.messages]


def _error(status: int, message: str, kind: str) -> JSONResponse:
    """OpenAI's error shape, so OpenAI clients show the reason, not just the status code."""
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": None, "code": status}},
        status_code=status,
    )


def create_llm_app(llm: LLM) -> FastAPI:
    """The app serving ``llm`` under its model name."""
    # Responses written by Python's json, as before they had models (pydantic's writer spells
    # some floats and characters differently).
    app = FastAPI(title="p13n LLM server", version="1", default_response_class=JSONResponse)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return _error(error.status_code, str(error.detail), "invalid_request_error")

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in error.errors()
        )
        return _error(422, f"invalid request: {problems}", "invalid_request_error")

    @app.get("/v1/models")
    def models() -> ServedModelsOut:
        return ServedModelsOut(data=[ServedModelOut(id=llm.model, created=0, owned_by="p13n")])

    @app.post("/v1/chat/completions", response_model=ChatCompletionOut)
    async def chat_completions(request: ChatRequest) -> ChatCompletionOut | StreamingResponse:
        if request.model != llm.model:
            raise HTTPException(404, f"model {request.model!r} is not served here: {llm.model!r}")
        options, messages = request.options(), request.chat()
        prompt_tokens = llm.tokenizer.count_chat(messages)
        if prompt_tokens + options.max_new_tokens > llm.context_window:
            raise HTTPException(
                400,
                f"the messages take {prompt_tokens} tokens and max_tokens asks for "
                f"{options.max_new_tokens}: more than {llm.model}'s context of "
                f"{llm.context_window} tokens",
            )
        created, completion_id = int(time.time()), f"chatcmpl-{uuid.uuid4().hex}"
        if request.stream:
            return StreamingResponse(
                _events(llm, request, completion_id, created), media_type="text/event-stream"
            )
        try:
            completion = await run_in_threadpool(llm.generate, messages, options)
        except LLMError as error:
            raise HTTPException(502, str(error)) from error
        return ChatCompletionOut.of(completion_id, created, completion)

    return app


def chunk_event(
    completion_id: str,
    created: int,
    model: str,
    delta: dict[str, str],
    finish: str | None = None,
    **extra: Any,
) -> str:
    """One server-sent event holding OpenAI's ``chat.completion.chunk``."""
    body = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }
    return f"data: {json.dumps(body)}\n\n"


def _events(llm: LLM, request: ChatRequest, completion_id: str, created: int) -> Iterator[str]:
    """Server-sent events in OpenAI's chunk format (a sync generator: Starlette iterates it in a
    worker thread, so decoding never blocks the event loop)."""

    def chunk(delta: dict[str, str], finish: str | None = None) -> str:
        return chunk_event(completion_id, created, llm.model, delta, finish)

    options = request.options()
    yield chunk({"role": "assistant", "content": ""})
    text = ""
    for piece in llm.stream(request.chat(), options):
        text += piece
        yield chunk({"content": piece})
    yield chunk({}, streamed_finish_reason(llm.tokenizer.count(text), options))
    yield "data: [DONE]\n\n"
