"""The user data model of survey §3.3: who the user is, what they wrote, did and prefer.

Records are validated pydantic models. A record without an explicit ``id`` gets a stable one derived
from its identifying content, so re-ingesting the same data maps to the same rows (a no-op).
``content_hash`` covers every field, so the store can tell an unchanged record from an updated one.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import unicodedata
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
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
DEFAULT_MAX_ATTRIBUTE_CHARS = 32_768
"""Longest ``attributes`` or ``metadata`` object (as compact JSON) a record may carry unless the
ingest configuration says otherwise: they are returned with every listing of the record."""
MAX_ATTRIBUTE_DEPTH = 32
"""Deepest nesting of objects and arrays inside ``attributes`` or ``metadata``."""
FLOAT32_MAX = 3.4028234663852886e38
"""Recommenders compute in float32: an interaction value beyond this would become infinite."""

_UNSAFE_ID_CATEGORIES = {
    "Cc": "a control character",
    "Cf": "a format character (bidi override, zero-width, ...)",
    "Cs": "a lone UTF-16 surrogate",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}


def _describe(char: str) -> str:
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X}" + (f" ({name})" if name else "")


def check_id(value: str) -> str:
    """An id is one URL path segment that reads the same everywhere: no ``/``, no control,
    format (bidi, zero-width), separator or surrogate characters, and not ``.`` or ``..``."""
    if value in (".", ".."):
        raise ValueError(f"id {value!r} is a path segment that URL clients rewrite; choose another")
    for position, char in enumerate(value):
        if char == "/":
            raise ValueError(
                f"id contains '/' at position {position}: ids are URL path segments "
                "(/v1/users/{id}), where '/' would name another resource"
            )
        kind = _UNSAFE_ID_CATEGORIES.get(unicodedata.category(char))
        if kind is not None:
            raise ValueError(f"id contains {kind}, {_describe(char)}, at position {position}")
    return value


@functools.cache
def _character_class(kind: Literal["unsafe in ids", "whitespace"]) -> str:
    """The characters of ``kind`` as the body of a regex character class, computed from this
    Python's Unicode database (so that a pattern and the check above agree exactly). Characters
    beyond the BMP are written literally: JSON Schema's regexes have no ``\\U`` escape."""
    if kind == "whitespace":
        chosen = [c for c in range(0x110000) if chr(c).isspace()]
    else:
        unsafe = _UNSAFE_ID_CATEGORIES.keys() - {"Cs"}  # no JSON text carries a lone surrogate
        chosen = [
            c for c in range(0x110000) if chr(c) == "/" or unicodedata.category(chr(c)) in unsafe
        ]
    ranges: list[list[int]] = []
    for code in chosen:
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])

    def char(code: int) -> str:
        return f"\\u{code:04x}" if code <= 0xFFFF else chr(code)

    return "".join(char(a) if a == b else f"{char(a)}-{char(b)}" for a, b in ranges)


END = r"(?![\s\S])"
"""End of the string in every regex dialect: ``$`` also matches before a final newline in
Python's (which property-based generators use), ``\\Z`` is not in ECMA-262's (JSON Schema's)."""


def id_pattern() -> str:
    """A JSON Schema pattern that holds exactly for the ids ``Id`` accepts (surrogates aside:
    JSON texts cannot carry them): once surrounding whitespace is stripped, a first and last
    character that is neither whitespace nor unsafe, no unsafe character between, and not ``.``
    or ``..``."""
    unsafe, space = _character_class("unsafe in ids"), _character_class("whitespace")
    core = f"[^{unsafe}{space}](?:[^{unsafe}]*[^{unsafe}{space}])?"
    return f"^[{space}]*(?!\\.{{1,2}}[{space}]*{END}){core}[{space}]*{END}"


def text_pattern() -> str:
    """A JSON Schema pattern of the texts a record requires: not blank, no NUL character."""
    space = _character_class("whitespace")
    return f"^[^\\u0000]*[^\\u0000{space}][^\\u0000]*{END}"


NO_NUL_PATTERN = f"^[^\\u0000]*{END}"
"""A JSON Schema pattern of strings without a NUL character."""


def whitespace_class() -> str:
    """The characters ``str.strip`` removes, as the body of a regex character class."""
    return _character_class("whitespace")


def kind_pattern() -> str:
    """A JSON Schema pattern of the kinds ``Kind`` accepts (surrounding whitespace is stripped
    and ASCII capitals folded)."""
    space = _character_class("whitespace")
    return f"^[{space}]*[A-Za-z][A-Za-z0-9_\\-]{{0,63}}[{space}]*{END}"


def lone_surrogate(value: str) -> int | None:
    """The position of the first lone UTF-16 surrogate in ``value`` (JSON's ``"\\ud800"``
    escapes make them; they are not Unicode, so UTF-8 cannot encode them), or None."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        return error.start
    return None


def check_unicode(value: str, what: str = "text") -> str:
    """Refuse what no store can keep as written: NUL characters (PostgreSQL refuses them) and lone
    UTF-16 surrogates."""
    position = lone_surrogate(value)
    if position is not None:
        raise ValueError(
            f"{what} contains a lone UTF-16 surrogate, {_describe(value[position])}, at "
            f"position {position}: it is not valid Unicode"
        )
    if "\x00" in value:
        raise ValueError(f"{what} contains a NUL character at position {value.index(chr(0))}")
    return value


MAX_ID_CHARS = 200


def _stripped_id(value: Any) -> Any:
    """Surrounding whitespace stripped, Python's notion of it as for texts and kinds (pydantic's
    strip_whitespace is Rust's, which keeps U+001C-U+001F). The length limit holds before
    stripping, as the published schema's ``maxLength`` says."""
    if not isinstance(value, str):
        return value
    if len(value) > MAX_ID_CHARS:
        raise ValueError(f"id has {len(value):,} characters, over the limit of {MAX_ID_CHARS}")
    return check_unicode(value, "id").strip()


Id = Annotated[
    str,
    StringConstraints(min_length=1),
    AfterValidator(check_id),
    BeforeValidator(_stripped_id),
]
Kind = Annotated[
    str,
    BeforeValidator(lambda value: value.strip().lower() if isinstance(value, str) else value),
    StringConstraints(pattern=r"^[a-z][a-z0-9_\-]{0,63}$"),
]


def _check_attributes(value: dict[str, JsonValue], info: ValidationInfo) -> dict[str, JsonValue]:
    """Attributes and metadata as every backend stores them: valid Unicode without NUL in keys
    and strings, finite numbers, at most ``MAX_ATTRIBUTE_DEPTH`` deep and ``max_attribute_chars``
    long as compact JSON."""
    stack: list[tuple[str, JsonValue, int]] = [("", value, 0)]
    while stack:  # iterative: a deep object must not exhaust the interpreter's stack
        path, node, depth = stack.pop()
        where = repr(path) if path else "the top level"
        if isinstance(node, dict | list):
            if depth >= MAX_ATTRIBUTE_DEPTH:
                raise ValueError(f"nests deeper than {MAX_ATTRIBUTE_DEPTH} levels at {where}")
            if isinstance(node, dict):
                for key, child in node.items():
                    check_unicode(key, f"a key at {where}")
                    stack.append((f"{path}.{key}" if path else key, child, depth + 1))
            else:
                stack.extend((f"{path}[{n}]", child, depth + 1) for n, child in enumerate(node))
        elif isinstance(node, str):
            check_unicode(node, f"the value at {where}")
        elif isinstance(node, float) and not math.isfinite(node):
            raise ValueError(f"the value at {where} is {node!r}: numbers must be finite")
    limit = (info.context or {}).get("max_attribute_chars", DEFAULT_MAX_ATTRIBUTE_CHARS)
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
    if size > limit:
        raise ValueError(
            f"is {size:,} characters as JSON, over the limit of {limit:,} "
            "(raise max_attribute_chars in the configuration to accept it)"
        )
    return value


Attributes = Annotated[dict[str, JsonValue], AfterValidator(_check_attributes)]

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
        check_unicode(text, "timestamp")
        try:
            moment = datetime.fromisoformat(text.upper())  # RFC 3339 allows 't' and 'z'
        except ValueError:
            raise ValueError(f"timestamp {value!r} does not parse; {_ISO_HINT}") from None
    else:
        raise ValueError(f"timestamp {value!r} has type {type(value).__name__}; {_ISO_HINT}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(
            f"timestamp {value!r} falls outside the years 1 to 9999 once converted to UTC"
        ) from None


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
    check_unicode(value, info.field_name or "text")
    if len(value) > limit:
        raise ValueError(
            f"text has {len(value):,} characters, over the limit of {limit:,} "
            "(raise max_document_chars in the configuration to accept it)"
        )
    return value


def _check_optional_text(value: str, info: ValidationInfo) -> str:
    return _check_text(value, info, allow_empty=True)


Text = Annotated[str, AfterValidator(_check_text)]
"""A text a record needs: not blank, valid Unicode without NUL, within ``max_text_chars``."""
OptionalText = Annotated[str, AfterValidator(_check_optional_text)]
"""A text that may be empty, under the same rules otherwise."""
Timestamp = Annotated[datetime | None, BeforeValidator(parse_timestamp)]
"""ISO 8601 or Unix seconds, kept as an aware UTC datetime in years 1-9999."""


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
    text: Text
    kind: Kind = "text"
    title: str | None = None
    timestamp: Timestamp = None
    metadata: Attributes = Field(default_factory=dict)

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
    timestamp: Timestamp = None
    metadata: Attributes = Field(default_factory=dict)

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError(f"value {value!r} is not a finite number")
        if value is not None and abs(value) > FLOAT32_MAX:
            raise ValueError(
                f"value {value!r} is beyond ±{FLOAT32_MAX:.4g}, the float32 range that "
                "recommenders compute in"
            )
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
    prompt: Text
    chosen: Text
    rejected: Text
    timestamp: Timestamp = None
    metadata: Attributes = Field(default_factory=dict)

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
    title: Text
    text: OptionalText = ""
    attributes: Attributes = Field(default_factory=dict)

    @property
    def embedding_text(self) -> str:
        return f"{self.title}\n{self.text}" if self.text else self.title


class Persona(Record):
    """A group of users who share preferences, with a description (survey §4.2)."""

    record_type: ClassVar[str] = "persona"
    identity_fields: ClassVar[tuple[str, ...]] = ()

    id: Id
    description: Text
    members: list[Id] = Field(default_factory=list)
    metadata: Attributes = Field(default_factory=dict)

    @field_validator("members")
    @classmethod
    def _sorted_unique(cls, value: list[str]) -> list[str]:
        return sorted(set(value))


RECORD_TYPES: dict[str, type[Record]] = {
    cls.record_type: cls for cls in (User, Document, Interaction, Preference, Item, Persona)
}
"""Record classes by their type name, as used in JSONL ``"type"`` fields and CSV ``--type``."""
