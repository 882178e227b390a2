"""The user data model (survey §3.3)."""

from p13n.data.models import (
    DEFAULT_MAX_TEXT_CHARS,
    RECORD_TYPES,
    Document,
    Interaction,
    Item,
    Persona,
    Preference,
    Record,
    User,
    parse_timestamp,
    stable_id,
)

__all__ = [
    "DEFAULT_MAX_TEXT_CHARS",
    "RECORD_TYPES",
    "Document",
    "Interaction",
    "Item",
    "Persona",
    "Preference",
    "Record",
    "User",
    "parse_timestamp",
    "stable_id",
]
