"""The user data model (survey §3.3)."""

from p13n.data.models import (
    DEFAULT_MAX_ATTRIBUTE_CHARS,
    DEFAULT_MAX_TEXT_CHARS,
    FLOAT32_MAX,
    RECORD_TYPES,
    Document,
    Interaction,
    Item,
    Persona,
    Preference,
    Record,
    User,
    check_id,
    check_unicode,
    parse_timestamp,
    stable_id,
)
from p13n.data.sourced import LoadOptions, Sourced

__all__ = [
    "DEFAULT_MAX_ATTRIBUTE_CHARS",
    "DEFAULT_MAX_TEXT_CHARS",
    "FLOAT32_MAX",
    "RECORD_TYPES",
    "Document",
    "Interaction",
    "Item",
    "LoadOptions",
    "Persona",
    "Preference",
    "Record",
    "Sourced",
    "User",
    "check_id",
    "check_unicode",
    "parse_timestamp",
    "stable_id",
]
