"""Personalization: answers with their trace (streamed, or side by side with the
non-personalized answer), recommendations, and feedback on either."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial

from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from p13n.data import Interaction, Preference, Record
from p13n.errors import ConfigError, P13nError
from p13n.personalize import Generation, Personalizer
from p13n.server.deps import TenantDep
from p13n.server.routes.common import (
    api_router,
    personalizer_config,
    require_user,
    to_record,
    write,
)
from p13n.server.schemas.requests import ChooseIn, FeedbackIn, GenerateIn, RecommendIn
from p13n.server.schemas.responses import (
    AUTH_ERRORS,
    COMMON_ERRORS,
    ComparisonOut,
    GenerationOut,
    LabelChoiceOut,
    RecommendationsOut,
    RecommendedItemOut,
    TraceOut,
    WriteOut,
    errors,
)
from p13n.server.state import ServerState
from p13n.server.streaming import drained, sse, stream_error

router = api_router(
    prefix="/v1", tags=["personalization"], responses=errors(*AUTH_ERRORS, *COMMON_ERRORS)
)

EVENTS = {
    "content": {
        "text/event-stream": {
            "schema": {
                "type": "string",
                "description": "with stream: server-sent events, each a JSON object: "
                '{"delta": text}, then {"trace": ...} (or {"error": ...}), then [DONE]',
            }
        }
    }
}
"""The streamed answer, documented beside the JSON one."""


@router.post(
    "/generate",
    response_model=GenerationOut | ComparisonOut,
    responses={200: EVENTS, **errors(404, 409, 502, 503)},
)
async def generate(
    body: GenerateIn, scope: TenantDep
) -> GenerationOut | ComparisonOut | StreamingResponse:
    """A personalized answer with its trace (what was retrieved, the prompt, the level, the
    model, timings); ``compare`` adds the non-personalized answer; ``stream`` sends server-sent
    events: text pieces, then the trace."""
    state = scope.state
    if body.stream and body.compare:
        raise ConfigError("stream and compare cannot be combined")
    config = personalizer_config(scope, body)
    personalizer = await run_in_threadpool(state.personalizer, scope.tenant, config)
    attributes = body.attributes or None
    if body.stream:
        return await _stream_generation(state, personalizer, body, attributes)
    async with state.gate.slot():
        if body.compare:
            baseline, personal = await run_in_threadpool(
                personalizer.compare, body.user, body.input, attributes=attributes
            )
            return ComparisonOut(
                baseline=GenerationOut.model_validate(baseline.to_dict()),
                personalized=GenerationOut.model_validate(personal.to_dict()),
            )
        result: Generation = await run_in_threadpool(
            personalizer.generate,
            body.user,
            body.input,
            personalize=body.personalize,
            attributes=attributes,
        )
    return GenerationOut.model_validate(result.to_dict())


async def _stream_generation(
    state: ServerState,
    personalizer: Personalizer,
    body: GenerateIn,
    attributes: dict[str, str] | None,
) -> StreamingResponse:
    # The prompt is prepared (and an unknown user refused) before the response starts.
    prepared = await run_in_threadpool(
        partial(personalizer.prepare, personalize=body.personalize, attributes=attributes),
        body.user,
        body.input,
    )

    admission = state.gate.admit()  # a full queue is still a 503 here, before the response starts

    async def events() -> AsyncIterator[str]:
        try:
            async with admission.slot():
                async for item in drained(partial(personalizer.complete_stream, prepared)):
                    if isinstance(item, Generation):
                        yield sse({"trace": item.trace.to_dict()})
                    else:
                        yield sse({"delta": item})
        except P13nError as error:  # the status is sent already: the error is the last event
            yield stream_error(error)
        yield "data: [DONE]\n\n"

    # The place is given back when the stream ends, or after the response if it never began.
    return StreamingResponse(
        events(), media_type="text/event-stream", background=BackgroundTask(admission.release)
    )


@router.post("/choose", responses=errors(404, 409, 502, 503))
async def choose(body: ChooseIn, scope: TenantDep) -> LabelChoiceOut:
    """The label (or rating) the model finds likeliest among ``labels``, with its trace: the
    answer of label and rating tasks, read as the task's learned policy says (calibrated, fused
    with the user's own label history) when ``policy`` is auto."""
    config = personalizer_config(scope, body)
    personalizer = await run_in_threadpool(scope.state.personalizer, scope.tenant, config)
    async with scope.state.gate.slot():
        chosen = await run_in_threadpool(
            partial(personalizer.choose, personalize=body.personalize),
            body.user,
            body.input,
            body.labels,
            attributes=body.attributes or None,
        )
    return LabelChoiceOut(
        label=chosen.label,
        log_probs=[None if math.isinf(v) else v for v in chosen.log_probs],
        scores=chosen.scores,
        trace=TraceOut.model_validate(chosen.trace.to_dict()),
    )


@router.post("/recommend", responses=errors(404, 502, 503))
async def recommend(body: RecommendIn, scope: TenantDep) -> RecommendationsOut:
    """The user's top-k unseen items from the tenant's interactions; a user without
    interactions gets the most popular items (``fallback`` says so); ``explain`` adds why."""
    await run_in_threadpool(require_user, scope.store, body.user)
    state = scope.state
    fitted = await run_in_threadpool(state.recommender, scope.tenant, body.model)
    texts = None
    if body.explain:
        from p13n.recommend.llm import RecommendationTexts

        texts = RecommendationTexts(state.llm)
        async with state.gate.slot():
            result = await run_in_threadpool(fitted.recommend, body.user, body.k, texts=texts)
    else:
        result = await run_in_threadpool(fitted.recommend, body.user, body.k)
    return RecommendationsOut(
        user=result.user_id,
        model=result.model,
        fallback=result.fallback,
        history=result.history,
        items=[
            RecommendedItemOut(
                item_id=r.item.id,
                title=r.item.title,
                score=r.score,
                explanation=None if r.explanation is None else r.explanation.text,
            )
            for r in result.items
        ],
        notes=result.notes,
    )


@router.post("/feedback", status_code=201, responses=errors(404))
async def feedback(body: FeedbackIn, scope: TenantDep) -> WriteOut:
    """Feedback on an answer (a preference pair, for DPO) or on an item (a rating)."""
    pair = (body.prompt, body.chosen, body.rejected)
    rating = (body.item_id, body.rating)
    if all(v is not None for v in pair) and all(v is None for v in rating):
        record: Record = to_record(
            Preference,
            {
                "user_id": body.user,
                "prompt": body.prompt,
                "chosen": body.chosen,
                "rejected": body.rejected,
                "timestamp": datetime.now(UTC),
            },
            "feedback",
        )
    elif all(v is not None for v in rating) and all(v is None for v in pair):
        record = to_record(
            Interaction,
            {
                "user_id": body.user,
                "item_id": body.item_id,
                "kind": "rating",
                "value": body.rating,
                "timestamp": datetime.now(UTC),
            },
            "feedback",
        )
    else:
        raise ConfigError(
            "feedback is either prompt + chosen + rejected (a preference pair) "
            "or item_id + rating, not a mix"
        )
    await run_in_threadpool(require_user, scope.store, body.user)
    return await write(scope, [(record, "feedback")])
