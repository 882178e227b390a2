"""OpenAI's models list and chat completions, personalized: any OpenAI client can talk to p13n,
passing the end user's id as ``user``."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial

from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from p13n.data import Document
from p13n.errors import ConfigError, P13nError
from p13n.llm import Completion
from p13n.personalize import Generation, Personalizer, PreparedPrompt
from p13n.server.auth import TenantScope
from p13n.server.deps import TenantDep
from p13n.server.llm_api import chunk_event
from p13n.server.routes.common import api_router, personalizer_config, to_record, write
from p13n.server.schemas.chat import ChatCompletionOut, ModelOut, ModelsOut
from p13n.server.schemas.requests import ChatCompletionIn, GenerateIn
from p13n.server.schemas.responses import (
    AUTH_ERRORS,
    COMMON_ERRORS,
    ChatExtrasOut,
    PersonalizedChatCompletionOut,
    TraceOut,
    WriteOut,
    errors,
)
from p13n.server.state import Admission
from p13n.server.streaming import drained, stream_error

router = api_router(prefix="/v1", tags=["openai"], responses=errors(*AUTH_ERRORS, *COMMON_ERRORS))

CHUNKS = {
    "content": {
        "text/event-stream": {
            "schema": {
                "type": "string",
                "description": "with stream: server-sent events, each OpenAI's "
                "chat.completion.chunk; the last one carries the p13n field; then [DONE]",
            }
        }
    }
}
"""The streamed completion, documented beside the JSON one."""


@router.get("/models")
async def models(scope: TenantDep) -> ModelsOut:
    name = scope.state.config.llm.model or "p13n"
    return ModelsOut(data=[ModelOut(id=name, owned_by="p13n")])


@router.post(
    "/chat/completions",
    response_model=PersonalizedChatCompletionOut,
    responses={200: CHUNKS, **errors(409, 502, 503)},
)
async def chat_completions(
    body: ChatCompletionIn, scope: TenantDep
) -> PersonalizedChatCompletionOut | StreamingResponse:
    """OpenAI's chat completions, personalized for ``user`` with their data (retrieval, the
    configured prompt builder, their adapter if the server is configured with one). The
    user's last message is the input; earlier turns reach the answer through retrieval, since
    each turn is stored as the user's data (``store: false`` turns that off)."""
    if not body.user:
        raise ConfigError("pass `user` (the end user's id): p13n personalizes for that user")
    said = next((m.text() for m in reversed(body.messages) if m.role == "user"), "")
    if not said.strip():
        raise ConfigError("the conversation has no user message to answer")
    state = scope.state
    adapter = state.config.chat_adapter
    if adapter != "none" and not await run_in_threadpool(
        partial(scope.store.adapters, user_id=body.user, task="chat", method=adapter)
    ):
        adapter = "none"
    request = GenerateIn(
        user=body.user,
        input=said[:100_000],
        max_tokens=body.max_completion_tokens or body.max_tokens,
        adapter=adapter,
    )
    config = personalizer_config(scope, request)
    personalizer = await run_in_threadpool(state.personalizer, scope.tenant, config)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    if body.stream:
        prepared = await run_in_threadpool(personalizer.prepare, body.user, said)
        admission = state.gate.admit()  # a full queue is still a 503, before the response starts
        chunks = _chat_chunks(
            scope, body, said, personalizer, prepared, admission, completion_id, created
        )
        return StreamingResponse(
            chunks, media_type="text/event-stream", background=BackgroundTask(admission.release)
        )
    async with state.gate.slot():
        result: Generation = await run_in_threadpool(personalizer.generate, body.user, said)
    stored = await _store_turn(scope, body, said, result)
    trace = result.trace
    completion = Completion(
        text=result.text,
        prompt_tokens=trace.prompt_tokens,
        completion_tokens=trace.completion_tokens,
        finish_reason=trace.finish_reason,
        model=trace.model,
    )
    return PersonalizedChatCompletionOut(
        **dict(ChatCompletionOut.of(completion_id, created, completion)),
        p13n=ChatExtrasOut(trace=TraceOut.model_validate(trace.to_dict()), stored=stored),
    )


async def _store_turn(
    scope: TenantScope, body: ChatCompletionIn, said: str, result: Generation
) -> WriteOut | None:
    """The user's turn as their document (the reply in its metadata), unless ``store`` is off."""
    if not body.store:
        return None
    turn = to_record(
        Document,
        {
            "user_id": body.user,
            "kind": "chat",
            "text": said,
            "timestamp": datetime.now(UTC),
            "metadata": {"reply": result.text},
        },
        "chat turn",
    )
    return await write(scope, [(turn, "chat")])


async def _chat_chunks(
    scope: TenantScope,
    body: ChatCompletionIn,
    said: str,
    personalizer: Personalizer,
    prepared: PreparedPrompt,
    admission: Admission,
    completion_id: str,
    created: int,
) -> AsyncIterator[str]:
    """OpenAI's chunks as the model decodes; the last one carries the trace and the stored turn
    (the ``p13n`` field)."""
    model = personalizer.llm.model
    yield chunk_event(completion_id, created, model, {"role": "assistant", "content": ""})
    result: Generation | None = None
    try:
        async with admission.slot():
            async for item in drained(partial(personalizer.complete_stream, prepared)):
                if isinstance(item, Generation):
                    result = item
                else:
                    yield chunk_event(completion_id, created, model, {"content": item})
    except P13nError as error:  # the status is sent already: the error is the last event
        yield stream_error(error)
        return
    assert result is not None  # complete_stream ends with the Generation
    stored = await _store_turn(scope, body, said, result)
    extra = {
        "trace": result.trace.to_dict(),
        "stored": None if stored is None else stored.model_dump(mode="json"),
    }
    yield chunk_event(completion_id, created, model, {}, result.trace.finish_reason, p13n=extra)
    yield "data: [DONE]\n\n"
