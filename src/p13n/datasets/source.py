"""Shared parsing for the loaders: a record validated into a ``Sourced`` (naming its file and
line on failure), numbered lines of plain or gzipped files, JSON-lines objects and CSV rows."""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from p13n.data import LoadOptions, Record, Sourced
from p13n.errors import IngestError


def build(
    model: type[Record], raw: dict[str, Any], source: str, line: int | None, options: LoadOptions
) -> Sourced:
    """Validate ``raw`` as ``model``; a failure is an ``IngestError`` naming record and field."""
    try:
        limits = {
            "max_text_chars": options.max_text_chars,
            "max_attribute_chars": options.max_attribute_chars,
        }
        record = model.model_validate(raw, context=limits)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        problem = first["msg"].removeprefix("Value error, ")
        if first["type"] == "missing":
            problem = f"missing required field for a {model.record_type}"
        elif first["type"] == "extra_forbidden":
            problem = f"unknown field for a {model.record_type}"
        raise IngestError(source, line, field, problem) from None
    return Sourced(record, source, line)


def read_lines(path: Path, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """Numbered lines of a text file (``.gz`` decompressed); bad bytes name their line."""
    opener = gzip.open if path.suffix == ".gz" else open
    number = 0
    try:
        with opener(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    text = raw.decode(encoding)
                except UnicodeDecodeError as error:
                    raise IngestError(
                        str(path),
                        number,
                        None,
                        f"invalid {encoding.upper()} at byte {error.start} of the line",
                    ) from None
                yield number, text.rstrip("\r\n")
    except FileNotFoundError:
        raise IngestError(str(path), None, None, "no such file") from None
    except (OSError, EOFError) as error:  # truncated or corrupt gzip
        raise IngestError(str(path), number + 1, None, f"unreadable: {error}") from None


def parse_object(line: str, source: str, number: int) -> dict[str, Any]:
    """One JSON-lines record, which must be an object."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise IngestError(
            source, number, None, f"malformed JSON: {error.msg} at column {error.colno}"
        ) from None
    if not isinstance(record, dict):
        raise IngestError(source, number, None, "expected a JSON object per line")
    return record


def read_csv(path: Path, required: Sequence[str] = ()) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows of a CSV file with a header, numbered by the line where each row ends.

    Quoted cells may span lines. A row with more or fewer cells than the header, or a header
    without a ``required`` column, is an error naming the line.
    """
    source = str(path)
    text = "\n".join(line for _, line in read_lines(path))
    reader = csv.reader(io.StringIO(text), strict=True)
    try:
        header = next(reader, None)
        if not header:
            raise IngestError(source, 1, None, "empty file: expected a CSV header")
        missing = [name for name in required if name not in header]
        if missing:
            raise IngestError(source, 1, missing[0], f"CSV header lacks column(s) {missing}")
        for values in reader:
            if not values:
                continue  # a blank line
            if len(values) != len(header):
                more = "more" if len(values) > len(header) else "fewer"
                raise IngestError(
                    source,
                    reader.line_num,
                    None,
                    f"{more} cells than header columns ({len(values)}, not {len(header)})",
                )
            yield reader.line_num, dict(zip(header, values, strict=True))
    except csv.Error as error:
        raise IngestError(source, reader.line_num, None, f"malformed CSV: {error}") from None
