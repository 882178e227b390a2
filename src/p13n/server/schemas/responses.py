"""The service's public response models (``*Out``): what each operation answers, so that
``/openapi.json`` documents every response, and the error shape every failure is sent in.

Each model's fields are in the order they are sent. Models of domain objects are made from
them (``from_attributes``) or from their own JSON form (``Trace.to_dict``, ``export_user``);
a field those gain that a model lacks is refused, not silently dropped."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, WithJsonSchema

from p13n.server.schemas.chat import ChatCompletionOut
from p13n.server.tenants import TenantSettings


# -------------------------------------------------------------------------------- errors
class ErrorDetail(BaseModel):
    message: str
    type: str
    code: int


class ErrorOut(BaseModel):
    """Every error: OpenAI's shape (OpenAI clients show it) and FastAPI's ``detail``."""

    error: ErrorDetail
    detail: str


_MEANINGS = {
    400: "The body is not UTF-8 JSON (or nests too deep), the path holds an encoded '/', or "
    "the request asks for something this server cannot do",
    401: "No valid API key (Authorization: Bearer <key>)",
    403: "The key is not allowed here (the admin key manages tenants; a tenant key reaches data)",
    404: "No such user, record, item or key (in this tenant)",
    409: "Conflicts with what is stored (a tenant that exists, an adapter that does not)",
    422: "A field or record is invalid; the message names it (nothing of the request is stored)",
    429: "Over the key's rate limit (Retry-After says when to retry)",
    500: "An internal error (logged on the server)",
    502: "The model backend failed",
    503: "The model's queue is full, the server is warming up, or a dependency is unavailable",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, in the shape of ``ErrorOut``."""
    return {status: {"model": ErrorOut, "description": _MEANINGS[status]} for status in statuses}


COMMON_ERRORS = (400, 422, 429, 500)
"""What any authenticated operation may answer."""
AUTH_ERRORS = (401, 403)


# ----------------------------------------------------------------------------- field types
class Public(BaseModel):
    """A response body: its fields, in the order they are sent, and nothing else."""

    model_config = ConfigDict(
        extra="forbid", from_attributes=True, json_schema_serialization_defaults_required=True
    )


JsonObject = Annotated[
    dict[str, JsonValue],
    WithJsonSchema(
        {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/AttributeValue"}}
    ),
]
"""Attributes or metadata as stored: any JSON object."""
IsoTime = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
"""A moment as Python's ``isoformat`` writes it (``2024-05-01T12:00:00.123456+00:00``)."""


# --------------------------------------------------------------------------- data records
class TypeCountsOut(Public):
    added: int
    updated: int
    unchanged: int


class WriteOut(Public):
    """What a write stored (in one transaction, after redaction)."""

    records: int = Field(description="records in the request")
    written: int = Field(description="records added or changed")
    embedded: int = Field(description="texts embedded for dense retrieval")
    counts: dict[str, TypeCountsOut] = Field(description="per record type")
    redacted: dict[str, int] = Field(description="PII spans redacted, per entity type")
    ids: list[str] = Field(description="the records' ids, in request order")


class UserRecordOut(Public):
    id: str
    attributes: JsonObject


class UserCountsOut(Public):
    documents: int
    interactions: int
    preferences: int
    embeddings: int
    personas: int


class UserSummaryOut(UserRecordOut):
    counts: UserCountsOut


class UsersOut(Public):
    total: int = Field(description="the tenant's users, all pages")
    users: list[UserSummaryOut]


class UserOut(UserSummaryOut):
    personas: list[str] = Field(description="ids of the personas the user belongs to")
    adapters: list[str] = Field(description="ids of the user's trained adapters")


class ForgottenOut(Public):
    user: str
    deleted: dict[str, int] = Field(description="rows deleted, per table")
    caches_cleared: list[str]
    left_on_disk: str | None = Field(
        description="null when nothing of the user is left in the store's files; else what is, "
        "and how an operator removes it"
    )


class DocumentOut(Public):
    id: str
    user_id: str
    text: str
    kind: str
    title: str | None
    timestamp: datetime | None
    metadata: JsonObject


class InteractionOut(Public):
    id: str
    user_id: str
    item_id: str
    kind: str
    value: float | None
    timestamp: datetime | None
    metadata: JsonObject


class PreferenceOut(Public):
    id: str
    user_id: str | None
    persona_id: str | None
    prompt: str
    chosen: str
    rejected: str
    timestamp: datetime | None
    metadata: JsonObject


class ItemOut(Public):
    id: str
    title: str
    text: str
    attributes: JsonObject


class DocumentsOut(Public):
    documents: list[DocumentOut]


class InteractionsOut(Public):
    interactions: list[InteractionOut]


class PreferencesOut(Public):
    preferences: list[PreferenceOut]


class RecordDeletedOut(Public):
    deleted: int
    left_on_disk: str | None


class ItemDeletedOut(Public):
    deleted: int


# --------------------------------------------------------------------------------- export
class PersonaMembershipOut(Public):
    id: str
    description: str
    metadata: JsonObject


class ProfileOut(Public):
    profile_key: str
    data_version: str
    model: str
    text: str
    created_at: IsoTime | None


class AdapterOut(Public):
    """An adapter's registry entry (never its weights)."""

    adapter_id: str
    user_id: str | None
    persona_id: str | None
    task: str
    method: str
    base_model: str
    base_hash: str
    config: JsonObject
    data_size: int
    metrics: JsonObject
    size_bytes: int
    weights_sha256: str
    created_at: IsoTime | None


class ExportOut(Public):
    """Everything stored about the user (``p13n.privacy.export.export_user``)."""

    # ``notes`` is sent only when there are some: not every field is always there.
    model_config = ConfigDict(json_schema_serialization_defaults_required=False)

    format: str
    tenant: str
    user_id: str
    exported_at: IsoTime
    data_version: str | None
    user: UserRecordOut
    documents: list[DocumentOut]
    interactions: list[InteractionOut]
    preferences: list[PreferenceOut]
    personas: list[PersonaMembershipOut]
    profiles: list[ProfileOut] | None
    embeddings: dict[str, int] | None = Field(description="document vectors, per encoder")
    adapters: list[AdapterOut]
    notes: list[str] | None = Field(None, description="what the export leaves out, and why")


# ----------------------------------------------------------------------- personalization
class TimingsOut(Public):
    query_ms: float
    retrieve_ms: float
    prompt_ms: float
    generate_ms: float
    total_ms: float


class RetrievedItemOut(Public):
    id: str
    source: str
    kind: str
    title: str | None
    text: str
    score: float
    timestamp: IsoTime | None
    owner: str


class RetrievedOut(Public):
    query: str
    retriever: str
    items: list[RetrievedItemOut]
    unmatched: int = Field(
        description="top-k rows not quoted: no word shared with the input (require_match) or a "
        "score at or under min_score"
    )
    min_score: float | None = Field(description="null: any score")
    require_match: bool


class MessageOut(Public):
    role: Literal["system", "user", "assistant"]
    content: str


class PromptItemOut(Public):
    id: str
    line: str
    truncated: bool


class PromptOut(Public):
    messages: list[MessageOut]
    builder: str
    task: str
    tokens: int
    budget: int
    tokenizer: str
    items: list[PromptItemOut]
    dropped: int = Field(description="retrieved items left out: they did not fit the budget")
    persona: str | None
    profile: str | None


class RouteOut(Public):
    level: Literal["user", "persona", "global", "none"]
    reason: str
    items: int | None
    persona: str | None
    placed_by: str | None
    description: str | None
    members: list[str]


class AdapterUsedOut(Public):
    adapter_id: str
    method: str
    weights_sha256: str
    swap_ms: float


class TraceOut(Public):
    """Why an answer is what it is (``p13n.personalize.Trace``)."""

    user_id: str
    personalized: bool
    task: str
    query: str | None
    query_generator: str | None
    retriever: str | None
    retrieved: RetrievedOut | None
    data_version: str
    prompt: PromptOut
    backend: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    profile_refreshed: bool | None
    timings: TimingsOut
    granularity: RouteOut | None
    adapter: AdapterUsedOut | None
    abstained: str | None = Field(
        description="why a personalized request got the non-personalized prompt: nothing of "
        "the user's data showed a sign of relevance"
    )
    policy: dict[str, Any] | None = Field(
        None,
        description="with policy auto: the task's learned policy that chose the settings (its "
        "choice, dev metric, examples and baseline), or that none is learned",
    )
    decoding: dict[str, Any] | None = Field(
        None,
        description="decoding-time personalization that shaped the answer (method, strength); "
        "null: standard decoding",
    )
    fallback: str | None = Field(
        None,
        description="why the learned policy's fallback served this user: its choice needs an "
        "adapter of a kind the user has none of",
    )
    refined: dict[str, Any] | None = Field(
        None,
        description="prompt refined: the user's refined instruction that framed the input "
        "(advice, level, held-in score before and after, LLM calls of its budget), or why the "
        "task's own instruction did (too little data)",
    )


class GenerationOut(Public):
    text: str
    trace: TraceOut


class LabelChoiceOut(Public):
    label: str = Field(description="the likeliest label, as the policy reads the scores")
    log_probs: list[float | None] = Field(
        description="log-probability of each label, in the request's order, after calibration "
        "and fusion; null: impossible (a history-only policy rules out every label but the "
        "user's most frequent)"
    )
    scores: list[float] = Field(description="the model's own log-likelihood of each label")
    trace: TraceOut


class ComparisonOut(Public):
    baseline: GenerationOut
    personalized: GenerationOut


class RecommendedItemOut(Public):
    item_id: str
    title: str
    score: float
    explanation: str | None


class RecommendationsOut(Public):
    user: str
    model: str
    fallback: str | None = Field(
        description="why the popular items were served instead of the model's ('unknown user', "
        "'no interactions', 'too little data'); null when the model answered"
    )
    history: int = Field(description="the user's interactions the model saw")
    items: list[RecommendedItemOut]
    notes: list[str]


class ChatExtrasOut(Public):
    trace: TraceOut
    stored: WriteOut | None = Field(description="the user's turn as stored; null with store=false")


class PersonalizedChatCompletionOut(ChatCompletionOut):
    """OpenAI's ``chat.completion``, and what p13n adds (``p13n``)."""

    p13n: ChatExtrasOut


# ------------------------------------------------------------------------------- tenants
class TenantOut(Public):
    name: str
    settings: TenantSettings
    created_at: IsoTime


class TenantsOut(Public):
    tenants: list[TenantOut]


class KeyOut(Public):
    key_id: str
    tenant: str
    label: str
    created_at: IsoTime
    revoked_at: IsoTime | None


class NewKeyOut(Public):
    """A new key, with the key itself: shown only in this response."""

    key: str
    key_id: str
    tenant: str
    label: str
    created_at: IsoTime
    revoked_at: IsoTime | None


class KeysOut(Public):
    keys: list[KeyOut]


class RevokedOut(Public):
    revoked: str


# ---------------------------------------------------------------------------- operations
class GateOut(Public):
    admitted: int = Field(description="generations running or waiting")
    waiting: int


class HealthOut(Public):
    status: Literal["ok"]
    uptime_s: float
    environment: Literal["development", "production"]
    model_loaded: bool
    warmed_up: bool
    generation: GateOut


class ReadyOut(Public):
    status: Literal["ready"]
