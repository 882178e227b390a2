"""The user data model of survey §3.3: who the user is, what they wrote, did and prefer.

Records are validated pydantic models. A record without an explicit ``id`` gets a stable one derived
from its identifying content, so re-ingesting the same data maps to the same rows (a no-op).
``content_hash`` covers every field, so the store can tell an unchanged record from an updated one.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

DEFAULT_MAX_TEXT_CHARS = 100_000
"""Longest text a record may carry unless the ingest configuration says otherwise."""

Id = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=200, pattern=r"^[^\x00-\x1f]+$"
    ),
]
Kind = Annotated[
    str,
    BeforeValidator(lambda value: value.strip().lower() if isinstance(value, str) else value),
    StringConstraints(pattern=r"^[a-z][a-z0-9_\-]{0,63}$"),
]
Attributes = dict[str, JsonValue]

_ISO_HINT = "use ISO 8601 (e.g. 2024-05-01T12:00:00Z) or Unix seconds"


def parse_timestamp(value: Any) -> datetime | None:
    """Accept a datetime, Unix seconds or an ISO 8601 string; return an aware UTC datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, bool):
        raise ValueError(f"timestamp {value!r} is a boolean; {_ISO_HINT}")
    elif isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"timestamp {value!r} is not finite; {_ISO_HINT}")
        try:
            moment = datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError(f"timestamp {value!r} is out of range; {_ISO_HINT}") from None
    elif isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"-?\d+(\.\d+)?", text):
            return parse_timestamp(float(text))
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"timestamp {value!r} does not parse; {_ISO_HINT}") from None
    else:
        raise ValueError(f"timestamp {value!r} has type {type(value).__name__}; {_ISO_HINT}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def stable_id(*parts: object) -> str:
    """A short, stable id from identifying content (sha256, 24 hex chars)."""
    return _digest(parts)[:24]


def _digest(value: object) -> str:
    canonical = json.dumps(
        value, sort_keys=True, ensure_ascii=False, default=str, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class Record(BaseModel):
    """Base of every record: strict about unknown fields, stable id, content hash."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, validate_default=True)

    record_type: ClassVar[str]
    identity_fields: ClassVar[tuple[str, ...]]

    id: Id | None = None

    @model_validator(mode="after")
    def _assign_stable_id(self) -> Record:
        if self.id is None:
            self.id = stable_id(
                self.record_type, *(_jsonable(getattr(self, name)) for name in self.identity_fields)
            )
        return self

    @property
    def content_hash(self) -> str:
        """Hash of every field: equal hashes mean re-ingesting this record changes nothing."""
        return _digest(self.model_dump(mode="json"))[:32]


def _jsonable(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else value


def _check_text(value: str, info: ValidationInfo, *, allow_empty: bool = False) -> str:
    limit = (info.context or {}).get("max_text_chars", DEFAULT_MAX_TEXT_CHARS)
    if not allow_empty and not value.strip():
        raise ValueError("text is empty")
    if "\x00" in value:
        raise ValueError(f"text contains a NUL character at position {value.index(chr(0))}")
    if len(value) > limit:
        raise ValueError(
            f"text has {len(value):,} characters, over the limit of {limit:,} "
            "(raise max_document_chars in the configuration to accept it)"
        )
    return value


class User(Record):
    """A user and their static attributes (age, occupation, location, ...)."""

    record_type: ClassVar[str] = "user"
    identity_fields: ClassVar[tuple[str, ...]] = ()

    id: Id  # a user always has an explicit id
    attributes: Attributes = Field(default_factory=dict)


class Document(Record):
    """Something the user wrote: a review, an email, a post, a paper abstract."""

    record_type: ClassVar[str] = "document"
    identity_fields: ClassVar[tuple[str, ...]] = ("user_id", "kind", "title", "text", "timestamp")

    user_id: Id
    text: str
    kind: Kind = "text"
    title: str | None = None
    timestamp: datetime | None = None
    metadata: Attributes = Field(default_factory=dict)

    _parse_timestamp = field_validator("timestamp", mode="before")(parse_timestamp)

    @field_validator("text")
    @classmethod
    def _text_within_limits(cls, value: str, info: ValidationInfo) -> str:
        return _check_text(value, info)

    @field_validator("title")
    @classmethod
    def _title_within_limits(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or not value.strip():
            return None
        return _check_text(value, info)

    @property
    def embedding_text(self) -> str:
        """What the encoder sees: the title, if any, then the text."""
        return f"{self.title}\n{self.text}" if self.title else self.text


class Interaction(Record):
    """Something the user did with an item: view, click, rate, purchase, ..."""

    record_type: ClassVar[str] = "interaction"
    identity_fields: ClassVar[tuple[str, ...]] = ("user_id", "item_id", "kind", "timestamp")

    user_id: Id
    item_id: Id
    kind: Kind
    value: float | None = None
    timestamp: datetime | None = None
    metadata: Attributes = Field(default_factory=dict)

    _parse_timestamp = field_validator("timestamp", mode="before")(parse_timestamp)

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError(f"value {value!r} is not a finite number")
        return value

    @model_validator(mode="after")
    def _rating_has_value(self) -> Interaction:
        if self.kind == "rate" and self.value is None:
            raise ValueError("a 'rate' interaction needs a value")
        return self


class Preference(Record):
    """A pairwise preference: for this prompt the user (or persona) prefers chosen over rejected."""

    record_type: ClassVar[str] = "preference"
    identity_fields: ClassVar[tuple[str, ...]] = (
        "user_id",
        "persona_id",
        "prompt",
        "chosen",
        "rejected",
    )

    user_id: Id | None = None
    persona_id: Id | None = None
    prompt: str
    chosen: str
    rejected: str
    timestamp: datetime | None = None
    metadata: Attributes = Field(default_factory=dict)

    _parse_timestamp = field_validator("timestamp", mode="before")(parse_timestamp)

    @field_validator("prompt", "chosen", "rejected")
    @classmethod
    def _texts_within_limits(cls, value: str, info: ValidationInfo) -> str:
        return _check_text(value, info)

    @model_validator(mode="after")
    def _owner_and_distinct(self) -> Preference:
        if self.user_id is None and self.persona_id is None:
            raise ValueError("a preference needs a user_id, a persona_id or both")
        if self.chosen == self.rejected:
            raise ValueError("chosen and rejected are the same text")
        return self


class Item(Record):
    """A catalog entry users interact with (a movie, a product, an article)."""

    record_type: ClassVar[str] = "item"
    identity_fields: ClassVar[tuple[str, ...]] = ()

    id: Id  # catalog items always carry their own id
    title: str
    text: str = ""
    attributes: Attributes = Field(default_factory=dict)

    @field_validator("title")
    @classmethod
    def _title_present(cls, value: str, info: ValidationInfo) -> str:
        return _check_text(value, info)

    @field_validator("text")
    @classmethod
    def _text_within_limits(cls, value: str, info: ValidationInfo) -> str:
        return _check_text(value, info, allow_empty=True)

    @property
    def embedding_text(self) -> str:
        return f"{self.title}\n{self.text}" if self.text else self.title


class Persona(Record):
    """A group of users who share preferences, with a description (survey §4.2)."""

    record_type: ClassVar[str] = "persona"
    identity_fields: ClassVar[tuple[str, ...]] = ()

    id: Id
    description: str
    members: list[Id] = Field(default_factory=list)
    metadata: Attributes = Field(default_factory=dict)

    @field_validator("description")
    @classmethod
    def _description_present(cls, value: str, info: ValidationInfo) -> str:
        return _check_text(value, info)

    @field_validator("members")
    @classmethod
    def _sorted_unique(cls, value: list[str]) -> list[str]:
        return sorted(set(value))


RECORD_TYPES: dict[str, type[Record]] = {
    cls.record_type: cls for cls in (User, Document, Interaction, Preference, Item, Persona)
}
"""Record classes by their type name, as used in JSONL ``"type"`` fields and CSV ``--type``."""
