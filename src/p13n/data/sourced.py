"""What every loader yields (a validated record and where it came from) and the limits it parses
under: the data types that loaders, ingest and privacy share."""

from __future__ import annotations

from dataclasses import dataclass

from p13n.data.models import DEFAULT_MAX_ATTRIBUTE_CHARS, DEFAULT_MAX_TEXT_CHARS, Record


@dataclass(frozen=True)
class Sourced:
    """A record and its origin, so that an error can name the file and line."""

    record: Record
    source: str
    line: int | None = None


@dataclass(frozen=True)
class LoadOptions:
    """Limits applied while parsing."""

    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
    max_attribute_chars: int = DEFAULT_MAX_ATTRIBUTE_CHARS
