"""The generic format for a user's own data: JSON lines (any record types mixed) or CSV (one type).

JSONL: one object per line with a ``"type"`` (user, document, interaction, preference, item,
persona) and that record's fields, e.g.
``{"type": "document", "user_id": "ada", "kind": "post", "text": "...",
"timestamp": "2024-05-01"}``.

CSV: one record type per file, named by ``record_type`` or by the file name (``documents.csv``,
``users.csv``, ...). Columns are the record's fields; ``attributes.<name>`` and ``metadata.<name>``
columns fill those dictionaries (values stay strings); a persona's ``members`` are ``|``-separated.
An empty cell means the field is absent. See docs/DATA_FORMAT.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from p13n.data import RECORD_TYPES, LoadOptions, Sourced
from p13n.datasets.source import build, parse_object, read_csv, read_lines
from p13n.errors import IngestError

_NESTED = ("attributes", "metadata")


def record_type_named(name: str, source: str, line: int | None) -> str:
    """``documents`` or ``document`` → ``document``; anything else is an error naming the record."""
    singular = name.strip().lower().removesuffix("s")
    if singular not in RECORD_TYPES:
        raise IngestError(
            source, line, "type", f"unknown record type {name!r}; use one of {sorted(RECORD_TYPES)}"
        )
    return singular


def load_jsonl(path: Path, options: LoadOptions = LoadOptions()) -> Iterator[Sourced]:
    """Records of any type from a JSON-lines file (``.jsonl`` or ``.jsonl.gz``)."""
    path = Path(path)
    source = str(path)
    for number, line in read_lines(path):
        if not line.strip():
            continue
        raw = parse_object(line, source, number)
        if "type" not in raw:
            raise IngestError(source, number, "type", "missing: every line needs a record type")
        kind = raw.pop("type")
        if not isinstance(kind, str):
            raise IngestError(source, number, "type", f"{kind!r} is not a record type name")
        yield build(
            RECORD_TYPES[record_type_named(kind, source, number)], raw, source, number, options
        )


def csv_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted([*path.glob("*.csv"), *path.glob("*.csv.gz")])
        if not files:
            raise IngestError(str(path), None, None, "no *.csv or *.csv.gz files here")
        return files
    if not path.exists():
        raise IngestError(str(path), None, None, "no such file or folder")
    return [path]


def load_csv(
    path: Path, options: LoadOptions = LoadOptions(), record_type: str | None = None
) -> Iterator[Sourced]:
    """Records from a CSV file (or each CSV file of a folder) of one record type."""
    for file in csv_files(Path(path)):
        name = record_type or file.name.removesuffix(".gz").removesuffix(".csv")
        kind = record_type_named(name, str(file), None)
        yield from _load_csv_file(file, kind, options)


def _load_csv_file(path: Path, kind: str, options: LoadOptions) -> Iterator[Sourced]:
    model = RECORD_TYPES[kind]
    for number, row in read_csv(path):
        yield build(model, _nest(row, kind), str(path), number, options)


def _nest(row: dict[str, str], kind: str) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    for column, value in row.items():
        if value == "":
            continue
        prefix, dot, name = column.partition(".")
        if dot and prefix in _NESTED:
            raw.setdefault(prefix, {})[name] = value
        elif column == "members" and kind == "persona":
            raw["members"] = [m.strip() for m in value.split("|") if m.strip()]
        else:
            raw[column] = value
    return raw
