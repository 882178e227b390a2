"""Bad input: each case stops the batch with an error naming file, line and field, and the
store is left exactly as it was (checked on a store that already holds data)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from p13n.datasets import LoadOptions, load_amazon, load_csv, load_jsonl
from p13n.encode import Encoder
from p13n.errors import IngestError
from p13n.ingest import ingest
from p13n.store import Store
from tests.helpers import dump

GOOD = {"type": "document", "user_id": "u1", "text": "a fine text", "timestamp": "2024-01-01"}


def jsonl(path: Path, *lines: str | bytes) -> Path:
    path.write_bytes(b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n" for x in lines))
    return path


def good(**changes: object) -> str:
    return json.dumps({**GOOD, **changes})


CASES: dict[str, tuple[Callable[[Path], Path], int | None, str | None, str]] = {
    "malformed JSON": (
        lambda d: jsonl(d / "a.jsonl", good(), '{"type": "document", "user_id": "u1", "text": '),
        2,
        None,
        "malformed JSON",
    ),
    "missing field": (
        lambda d: jsonl(d / "a.jsonl", good(), json.dumps({"type": "document", "text": "no user"})),
        2,
        "user_id",
        "missing required field",
    ),
    "wrong type": (
        lambda d: jsonl(d / "a.jsonl", good(), good(text=["not", "a", "string"])),
        2,
        "text",
        "valid string",
    ),
    "wrong number type": (
        lambda d: jsonl(
            d / "a.jsonl",
            json.dumps(
                {
                    "type": "interaction",
                    "user_id": "u1",
                    "item_id": "i",
                    "kind": "rate",
                    "value": "five",
                }
            ),
        ),
        1,
        "value",
        "valid number",
    ),
    "empty text": (
        lambda d: jsonl(d / "a.jsonl", good(), good(text="   \n ")),
        2,
        "text",
        "text is empty",
    ),
    "over size limit": (
        lambda d: jsonl(d / "a.jsonl", good(), good(text="x" * 1001)),
        2,
        "text",
        "1,001 characters, over the limit of 1,000",
    ),
    "invalid UTF-8": (
        lambda d: jsonl(
            d / "a.jsonl", good(), b'{"type": "document", "user_id": "u1", "text": "caf\xe9"}'
        ),
        2,
        None,
        "invalid UTF-8",
    ),
    "unparseable timestamp": (
        lambda d: jsonl(d / "a.jsonl", good(), good(text="other", timestamp="last Tuesday")),
        2,
        "timestamp",
        "does not parse",
    ),
    "same id, different content": (
        lambda d: jsonl(d / "a.jsonl", good(id="d1"), good(), good(id="d1", text="changed")),
        3,
        "id",
        "appears twice in this batch with different content (first at",
    ),
    "unknown field": (
        lambda d: jsonl(d / "a.jsonl", good(), good(colour="red")),
        2,
        "colour",
        "unknown field",
    ),
    "unknown record type": (
        lambda d: jsonl(d / "a.jsonl", good(), good(type="tweet")),
        2,
        "type",
        "unknown record type",
    ),
    "identical preference texts": (
        lambda d: jsonl(
            d / "a.jsonl",
            json.dumps(
                {
                    "type": "preference",
                    "user_id": "u1",
                    "prompt": "p",
                    "chosen": "x",
                    "rejected": "x",
                }
            ),
        ),
        1,
        None,
        "chosen and rejected are the same text",
    ),
}


@pytest.fixture
def populated(store: Store, tmp_path: Path, encoder: Encoder) -> Store:
    seed = jsonl(
        tmp_path / "seed.jsonl",
        good(text="already here"),
        json.dumps({"type": "user", "id": "u1", "attributes": {"a": 1}}),
    )
    ingest(store, load_jsonl(seed), encoder=encoder)
    return store


@pytest.mark.parametrize("case", list(CASES))
def test_bad_jsonl_stops_the_batch(
    case: str, populated: Store, tmp_path: Path, encoder: Encoder
) -> None:
    make, line, field, problem = CASES[case]
    path = make(tmp_path)
    before = dump(populated)
    with pytest.raises(IngestError) as caught:
        ingest(populated, load_jsonl(path, LoadOptions(max_text_chars=1000)), encoder=encoder)
    error = caught.value
    assert (error.source, error.line, error.field) == (str(path), line, field)
    assert problem in str(error)
    assert str(error).startswith(f"{path}:{line}: ")
    assert dump(populated) == before


def test_bad_csv_row_names_its_line(populated: Store, tmp_path: Path, encoder: Encoder) -> None:
    path = tmp_path / "documents.csv"
    path.write_text(
        'user_id,text,timestamp\nu1,fine,2024-01-01\nu1,"two\nlines",2024-01-02\n'
        "u1,bad time,31/02/2024\n"
    )
    before = dump(populated)
    with pytest.raises(IngestError, match=r"documents.csv:5: field 'timestamp'"):
        ingest(populated, load_csv(path), encoder=encoder)
    assert dump(populated) == before


def test_csv_with_more_cells_than_header(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_text("id\nu1,extra\n")
    with pytest.raises(IngestError, match=r"users\.csv:2: more cells than header columns"):
        list(load_csv(path))
    path.write_text("id,attributes.city\nu1,Oslo\nu2\n")
    with pytest.raises(IngestError, match=r"users\.csv:3: fewer cells than header columns"):
        list(load_csv(path))


def test_amazon_review_without_reviewer(populated: Store, tmp_path: Path, encoder: Encoder) -> None:
    path = tmp_path / "bad.json.gz"
    review = {
        "overall": 5.0,
        "reviewerID": "A1",
        "asin": "B1",
        "reviewText": "ok",
        "unixReviewTime": 1441324800,
    }
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(json.dumps(review) + "\n")
        handle.write(json.dumps({k: v for k, v in review.items() if k != "reviewerID"}) + "\n")
    before = dump(populated)
    with pytest.raises(IngestError, match=r"bad.json.gz:2: field 'reviewerID'"):
        ingest(populated, load_amazon(path), encoder=encoder)
    assert dump(populated) == before


def test_truncated_gzip(tmp_path: Path) -> None:
    path = tmp_path / "cut.json.gz"
    review = {"overall": 5.0, "reviewerID": "A1", "asin": "B1", "unixReviewTime": 1441324800}
    payload = gzip.compress(
        b"".join(
            json.dumps({**review, "reviewText": f"text {n}"}).encode() + b"\n" for n in range(5000)
        )
    )
    path.write_bytes(payload[: len(payload) // 2])
    with pytest.raises(IngestError, match="unreadable"):
        list(load_amazon(path))
