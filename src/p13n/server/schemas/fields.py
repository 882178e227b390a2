"""The field types of the service's request models, and the JSON Schema each publishes.

Fields are the data model's own types (``p13n.data``: ids, texts, kinds, attributes,
timestamps), so a request is checked by the same rules as a record of ``p13n ingest``. Each
type's published schema states those rules (its patterns computed from the same Unicode
properties), so that ``/openapi.json`` describes exactly what is accepted: what it allows is
accepted, and what it refuses is refused. The few rules JSON Schema cannot state are named in
the operations' descriptions.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Path
from pydantic import AfterValidator, BeforeValidator, WithJsonSchema
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
    id_pattern,
    kind_pattern,
    text_pattern,
)
from p13n.errors import StoreError
from p13n.server.tenants import integral
from p13n.store.base import TENANT_PATTERN, check_tenant


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


# ------------------------------------------------------------------------------- tenants
TENANT_NAME_SCHEMA: JsonDict = {
    "type": "string",
    "pattern": TENANT_PATTERN.removesuffix("$") + END,
    "description": "1-64 letters, digits, '_', '.' or '-', starting with a letter or digit",
}


def _tenant_name(name: str) -> str:
    try:
        return check_tenant(name)
    except StoreError as error:  # a ValueError is what pydantic reports as the field's problem
        raise ValueError(str(error)) from None


TenantName = Annotated[str, AfterValidator(_tenant_name), WithJsonSchema(TENANT_NAME_SCHEMA)]
"""A tenant's name in a body, checked by the store's own rule."""
PathTenant = Annotated[str, Path(json_schema_extra=TENANT_NAME_SCHEMA)]
