"""The service's request models (``*In``): what each operation accepts, and its JSON Schema."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, WithJsonSchema
from pydantic.config import JsonDict

from p13n.adapt import methods
from p13n.data.models import END, NO_NUL_PATTERN, check_unicode, whitespace_class
from p13n.personalize.decoding import decoding_methods
from p13n.prompt import builders, templates
from p13n.registry import Registry
from p13n.retrieve import query_generators, retrievers
from p13n.server.schemas.fields import (
    ApiAttributes,
    ApiId,
    ApiInt,
    ApiKind,
    ApiOptionalText,
    ApiText,
    ApiTimestamp,
    ApiValue,
    TenantName,
)
from p13n.server.tenants import TenantSettings


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


class PersonalizedIn(Strict):
    """What every personalization request names: the user, the input, and the pieces that
    answer it (unset: the server's, or the task's learned policy)."""

    user: ApiId
    input: ApiText
    task: Annotated[str, _one_of(templates)] = "chat"
    retriever: Annotated[str, _one_of(retrievers)] | None = None
    k: ApiInt | None = Field(None, ge=0, le=50)
    prompt: Annotated[str, _one_of(builders)] | None = None
    query: Annotated[str, _one_of(query_generators)] | None = None
    level: Literal["auto", "user", "persona", "global"] | None = None
    attributes: dict[str, str] = {}
    personalize: bool = True


class GenerateIn(PersonalizedIn):
    adapter: Annotated[
        str,
        AfterValidator(lambda name: methods.check(name, none=True)),
        Field(json_schema_extra=methods.schema_enum(none=True)),
    ] = "none"
    decoding: Annotated[str, _one_of(decoding_methods)] | None = Field(
        None, description="decoding-time personalization (default: the server's, standard)"
    )
    steering: float | None = Field(
        None,
        ge=0,
        le=50,
        description="the decoding method's strength: CoS λ, CoPe β, StyleVector α",
    )
    policy: Literal["auto", "fixed"] | None = Field(
        None,
        description="auto: the task's learned policy chooses prompt, retriever and k; fixed: "
        "these fields do. Default: fixed when retriever, k or prompt is given, else the "
        "server's (auto)",
    )
    max_tokens: ApiInt | None = Field(None, ge=1, le=4096)
    compare: bool = Field(False, description="also answer without personalization")
    stream: bool = False


class ChooseIn(PersonalizedIn):
    """A label or rating chosen by the model's likelihood (``Personalizer.choose``)."""

    labels: list[ApiText] = Field(min_length=1, max_length=100, description="the answers to score")
    adapter: Annotated[
        str,
        AfterValidator(lambda name: methods.check(name, purpose="choices", none=True)),
        Field(json_schema_extra=methods.schema_enum("choices", none=True)),
    ] = "none"
    policy: Literal["auto", "fixed"] | None = Field(
        None,
        description="auto: the task's learned policy chooses prompt, retriever, k, calibration "
        "and fusion with the user's label history; fixed: these fields do (no calibration)",
    )


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
class TenantIn(Strict):
    name: TenantName
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
