"""The service's request models and error shape, and the JSON Schema of what it accepts.

Fields are the data model's own types (``p13n.data``: ids, texts, kinds, attributes,
timestamps), so a request is checked by the same rules as a record of ``p13n ingest``. Each
type's published schema states those rules (its patterns computed from the same Unicode
properties), so that ``/openapi.json`` describes exactly what is accepted: what it allows is
accepted, and what it refuses is refused. The few rules JSON Schema cannot state are named in
the operations' descriptions.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    WithJsonSchema,
)
from pydantic.config import JsonDict

from p13n.data import DEFAULT_MAX_ATTRIBUTE_CHARS, DEFAULT_MAX_TEXT_CHARS, FLOAT32_MAX
from p13n.data.models import (
    END,
    MAX_ATTRIBUTE_DEPTH,
    MAX_ID_CHARS,
    NO_NUL_PATTERN,
    Attributes,
    Id,
    Kind,
    OptionalText,
    Text,
    Timestamp,
    check_unicode,
    id_pattern,
    kind_pattern,
    text_pattern,
    whitespace_class,
)
from p13n.errors import StoreError
from p13n.prompt import builders, templates
from p13n.registry import Registry
from p13n.retrieve import query_generators, retrievers
from p13n.server.tenants import TenantSettings, integral
from p13n.store.base import TENANT_PATTERN, check_tenant


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


# ----------------------------------------------------------------- content rules, as schema
def _schema(**rules: Any) -> WithJsonSchema:
    return WithJsonSchema({"type": "string", **rules})


ApiId = Annotated[Id, _schema(minLength=1, maxLength=MAX_ID_CHARS, pattern=id_pattern())]
"""An id: one URL path segment (no '/', control, bidi or zero-width characters), 1-200 long."""
ApiText = Annotated[
    Text, _schema(minLength=1, maxLength=DEFAULT_MAX_TEXT_CHARS, pattern=text_pattern())
]
ApiOptionalText = Annotated[
    OptionalText, _schema(maxLength=DEFAULT_MAX_TEXT_CHARS, pattern=NO_NUL_PATTERN)
]
ApiKind = Annotated[Kind, _schema(pattern=kind_pattern())]
ApiAttributes = Annotated[
    Attributes,
    WithJsonSchema(
        {
            "type": "object",
            "propertyNames": {"pattern": NO_NUL_PATTERN},
            "additionalProperties": {"$ref": "#/components/schemas/AttributeValue"},
            "description": "Any JSON object: finite numbers, strings without NUL, nested at "
            f"most {MAX_ATTRIBUTE_DEPTH} deep, at most {DEFAULT_MAX_ATTRIBUTE_CHARS:,} characters "
            "as JSON",
        }
    ),
]
ATTRIBUTE_VALUE: dict[str, Any] = {
    "anyOf": [
        {"type": "null"},
        {"type": "boolean"},
        {"type": "number"},
        {"type": "string", "pattern": NO_NUL_PATTERN},
        {"type": "array", "items": {"$ref": "#/components/schemas/AttributeValue"}},
        {
            "type": "object",
            "propertyNames": {"pattern": NO_NUL_PATTERN},
            "additionalProperties": {"$ref": "#/components/schemas/AttributeValue"},
        },
    ]
}
"""The recursive component ``ApiAttributes`` refers to (added to the OpenAPI document)."""

FIRST_UNIX_SECOND, LAST_UNIX_SECOND = -62_135_596_800, 253_402_300_799
"""Unix seconds of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z."""
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def _rfc3339(value: Any) -> Any:
    """Over HTTP a timestamp string is an RFC 3339 date-time, zone included, as the schema says
    (files may also hold dates, zone-less times and Unix seconds as text)."""
    if isinstance(value, str) and _RFC3339.fullmatch(value) is None:
        raise ValueError(
            f"timestamp {value!r} is not an RFC 3339 date-time with a zone (e.g. "
            "2024-05-01T12:00:00Z); Unix seconds are sent as a JSON number"
        )
    return value


ApiTimestamp = Annotated[
    Timestamp,
    BeforeValidator(_rfc3339),
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "string",
                    "format": "date-time",
                    # The first and last day only in zones whose UTC time stays in years 1-9999.
                    "pattern": r"^(?!0001-01-01[Tt][^Zz+-]*\+[0-9]|9999-12-31[Tt][^Zz+-]*-[0-9])",
                },
                {"type": "number", "minimum": FIRST_UNIX_SECOND, "maximum": LAST_UNIX_SECOND},
                {"type": "null"},
            ],
            "description": "ISO 8601 / RFC 3339 date-time (UTC if no zone), or Unix seconds",
        }
    ),
]


def _float32(value: float) -> float:
    if not abs(value) <= FLOAT32_MAX:  # also NaN
        raise ValueError(f"{value!r} is not a finite number within ±{FLOAT32_MAX:.4g} (float32)")
    return value


ApiValue = Annotated[
    float,
    AfterValidator(_float32),
    WithJsonSchema({"type": "number", "minimum": -FLOAT32_MAX, "maximum": FLOAT32_MAX}),
]


PathId = Annotated[
    str,
    Path(json_schema_extra={"minLength": 1, "maxLength": MAX_ID_CHARS, "pattern": id_pattern()}),
]
"""An id in a path: only what ``ApiId`` accepts can exist, so anything else is not found."""


ApiInt = Annotated[int, BeforeValidator(integral)]


class Strict(BaseModel):
    """Unknown fields are errors, and JSON types are taken as they are (no ``"1"`` for 1)."""

    model_config = ConfigDict(extra="forbid", strict=True)


# --------------------------------------------------------------------------- data records
class UserIn(Strict):
    id: ApiId
    attributes: ApiAttributes = {}


class DocumentIn(Strict):
    text: ApiText
    kind: ApiKind = "text"
    title: ApiOptionalText | None = None
    timestamp: ApiTimestamp = None
    id: ApiId | None = None
    metadata: ApiAttributes = {}


_RATE_NEEDS_VALUE: JsonDict = {
    "if": {
        "properties": {
            "kind": {
                "pattern": f"^[{whitespace_class()}]*[Rr][Aa][Tt][Ee][{whitespace_class()}]*{END}"
            }
        },
        "required": ["kind"],
    },
    "then": {"properties": {"value": {"type": "number"}}, "required": ["value"]},
}


class InteractionIn(Strict):
    """``value`` is required when ``kind`` is ``rate``."""

    model_config = ConfigDict(json_schema_extra=_RATE_NEEDS_VALUE)

    item_id: ApiId
    kind: ApiKind = "view"
    value: ApiValue | None = None
    timestamp: ApiTimestamp = None
    id: ApiId | None = None
    metadata: ApiAttributes = {}


class PreferenceIn(Strict):
    """``chosen`` and ``rejected`` must differ (which JSON Schema cannot state)."""

    prompt: ApiText
    chosen: ApiText
    rejected: ApiText
    timestamp: ApiTimestamp = None
    id: ApiId | None = None
    metadata: ApiAttributes = {}


class ItemIn(Strict):
    id: ApiId
    title: ApiText
    text: ApiOptionalText = ""
    attributes: ApiAttributes = {}


# The records of a batch: each record type's fields and a ``type`` naming it.
class UserRecord(UserIn):
    type: Literal["user"]


class DocumentRecord(DocumentIn):
    type: Literal["document"]
    user_id: ApiId


class InteractionRecord(InteractionIn):
    model_config = ConfigDict(json_schema_extra=_RATE_NEEDS_VALUE)

    type: Literal["interaction"]
    user_id: ApiId
    kind: ApiKind  # required in a record


_OWNED: JsonDict = {
    "anyOf": [
        {"properties": {"user_id": {"type": "string"}}, "required": ["user_id"]},
        {"properties": {"persona_id": {"type": "string"}}, "required": ["persona_id"]},
    ]
}


class PreferenceRecord(PreferenceIn):
    """A ``user_id``, a ``persona_id`` or both; ``chosen`` and ``rejected`` must differ."""

    model_config = ConfigDict(json_schema_extra=_OWNED)

    type: Literal["preference"]
    user_id: ApiId | None = None
    persona_id: ApiId | None = None


class ItemRecord(ItemIn):
    type: Literal["item"]


class PersonaRecord(Strict):
    type: Literal["persona"]
    id: ApiId
    description: ApiText
    members: list[ApiId] = []
    metadata: ApiAttributes = {}


RecordIn = Annotated[
    UserRecord | DocumentRecord | InteractionRecord | PreferenceRecord | ItemRecord | PersonaRecord,
    Field(discriminator="type"),
]


class BatchIn(Strict):
    """Records in the JSONL format of ``p13n ingest`` (docs/DATA_FORMAT.md), each with a
    ``type``. The same id twice in a batch must have the same content (which JSON Schema
    cannot state)."""

    records: list[RecordIn] = Field(min_length=1)


# ----------------------------------------------------------------------- personalization
def _one_of(registry: Registry[Any]) -> Any:
    """A field whose schema lists the registry's names, read when the schema is made (the
    server's, after every part has registered); the personalizer's config checks them."""

    def listed(schema: JsonDict) -> None:
        schema["enum"] = list[JsonValue](registry.names())

    return Field(json_schema_extra=listed)


class GenerateIn(Strict):
    user: ApiId
    input: ApiText
    task: Annotated[str, _one_of(templates)] = "chat"
    retriever: Annotated[str, _one_of(retrievers)] | None = None
    k: ApiInt | None = Field(None, ge=0, le=50)
    prompt: Annotated[str, _one_of(builders)] | None = None
    query: Annotated[str, _one_of(query_generators)] | None = None
    level: Literal["auto", "user", "persona", "global"] | None = None
    adapter: Literal["none", "lora", "dpo", "embedding"] = "none"
    attributes: dict[str, str] = {}
    max_tokens: ApiInt | None = Field(None, ge=1, le=4096)
    personalize: bool = True
    compare: bool = Field(False, description="also answer without personalization")
    stream: bool = False


class RecommendIn(Strict):
    user: ApiId
    k: ApiInt = Field(10, ge=1, le=100)
    model: Literal["popularity", "item-knn", "als", "bpr", "content", "hybrid"] = "hybrid"
    explain: bool = False


_PAIR_OR_RATING: JsonDict = {
    "oneOf": [
        {
            "required": ["prompt", "chosen", "rejected"],
            "properties": {
                "prompt": {"type": "string"},
                "chosen": {"type": "string"},
                "rejected": {"type": "string"},
                "item_id": {"type": "null"},
                "rating": {"type": "null"},
            },
        },
        {
            "required": ["item_id", "rating"],
            "properties": {
                "prompt": {"type": "null"},
                "chosen": {"type": "null"},
                "rejected": {"type": "null"},
                "item_id": {"type": "string"},
                "rating": {"type": "number"},
            },
        },
    ]
}


class FeedbackIn(Strict):
    """A preference pair (prompt, chosen, rejected; they must differ), or a rating of an item
    (item_id, rating); not a mix."""

    model_config = ConfigDict(json_schema_extra=_PAIR_OR_RATING)

    user: ApiId
    prompt: ApiText | None = None
    chosen: ApiText | None = None
    rejected: ApiText | None = None
    item_id: ApiId | None = None
    rating: float | None = Field(None, ge=-1000, le=1000, allow_inf_nan=False)


# ------------------------------------------------------------------------------- tenants
_TENANT_NAME: JsonDict = {
    "type": "string",
    "pattern": TENANT_PATTERN.removesuffix("$") + END,
    "description": "1-64 letters, digits, '_', '.' or '-', starting with a letter or digit",
}


def _tenant_name(name: str) -> str:
    try:
        return check_tenant(name)
    except StoreError as error:  # a ValueError is what pydantic reports as the field's problem
        raise ValueError(str(error)) from None


PathTenant = Annotated[str, Path(json_schema_extra=_TENANT_NAME)]


class TenantIn(Strict):
    name: Annotated[str, AfterValidator(_tenant_name), WithJsonSchema(_TENANT_NAME)]
    settings: TenantSettings = TenantSettings()


def _label(value: str) -> str:
    return check_unicode(value, "label")


MAX_LABEL_CHARS = 200


class KeyIn(Strict):
    label: Annotated[
        str,
        Field(max_length=MAX_LABEL_CHARS),
        AfterValidator(_label),
        WithJsonSchema({"type": "string", "maxLength": MAX_LABEL_CHARS, "pattern": NO_NUL_PATTERN}),
    ] = ""


# ------------------------------------------------------------------- OpenAI's chat request
class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class ChatCompletionIn(BaseModel):
    """OpenAI's request; fields p13n does not use are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessageIn] = Field(min_length=1)
    user: str | None = Field(None, max_length=200)
    max_tokens: int | None = Field(None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(None, ge=1, le=4096)
    stream: bool = False
    store: bool = Field(True, description="keep the user's turn as their data (p13n extension)")
