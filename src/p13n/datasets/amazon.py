"""Amazon Review Data (2018) per-category files (``.json`` or ``.json.gz``, one review per line).

Each review becomes the user's ``review`` document (title = summary) and a ``rate`` interaction
with the product. The 2018 release repeats one review across product variants: such copies
(same reviewer, text and time) collapse into one document whose metadata lists every product.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from p13n.data import Document, Interaction, LoadOptions, Sourced, stable_id
from p13n.datasets.source import build, parse_object, read_lines
from p13n.errors import IngestError

_REQUIRED = ("reviewerID", "asin", "overall", "unixReviewTime")


def amazon_files(path: Path) -> list[Path]:
    """The review files at ``path`` (a file, or a folder of ``*.json``/``*.json.gz``)."""
    if path.is_dir():
        files = sorted([*path.glob("*.json"), *path.glob("*.json.gz")])
        if not files:
            raise IngestError(str(path), None, None, "no *.json or *.json.gz review files here")
        return files
    if not path.exists():
        raise IngestError(str(path), None, None, "no such file or folder")
    return [path]


def load_amazon(path: Path, options: LoadOptions = LoadOptions()) -> Iterator[Sourced]:
    """Users' reviews (documents, duplicates collapsed) and ratings (interactions)."""
    for file in amazon_files(Path(path)):
        yield from _load_file(file, options)


def _load_file(path: Path, options: LoadOptions) -> Iterator[Sourced]:
    source = str(path)
    # Copies of one review (across variants, or repeated lines) collapse: keyed by stable id.
    reviews: dict[str, tuple[int, dict[str, Any]]] = {}
    ratings: dict[str, tuple[int, dict[str, Any]]] = {}
    for number, line in read_lines(path):
        if not line.strip():
            continue
        record = _parse(line, source, number)
        user, item, time = record["reviewerID"], record["asin"], record["unixReviewTime"]
        text = record.get("reviewText")
        if not (isinstance(text, str) and text.strip()):
            text = None  # a rating without review text: kept as an interaction only
        verified = bool(record.get("verified", False))
        review_id = None if text is None else stable_id("amazon-review", user, text, time)
        # One user can review several variants of one product on one day, with different texts
        # and ratings: the review text is part of what identifies a rating.
        rating_id = stable_id("amazon-rating", user, item, time, text)
        if rating_id in ratings and ratings[rating_id][1]["value"] == record["overall"]:
            ratings[rating_id][1]["metadata"]["verified"] |= verified
        else:
            yield from _flush(ratings.pop(rating_id, None), Interaction, source, options)
            ratings[rating_id] = (
                number,
                {
                    "id": rating_id,
                    "user_id": user,
                    "item_id": item,
                    "kind": "rate",
                    "value": record["overall"],
                    "timestamp": time,
                    "metadata": {"verified": verified, "review_id": review_id},
                },
            )
        if review_id is None:
            continue
        if review_id in reviews:
            meta = reviews[review_id][1]["metadata"]
            meta["items"] = sorted({*meta["items"], item})
            meta["verified"] |= verified
            continue
        summary = record.get("summary")
        reviews[review_id] = (
            number,
            {
                "id": review_id,
                "user_id": user,
                "kind": "review",
                "text": text,
                "title": summary if isinstance(summary, str) else None,
                "timestamp": time,
                "metadata": {"items": [item], "rating": record["overall"], "verified": verified},
            },
        )
    for entry in ratings.values():
        yield from _flush(entry, Interaction, source, options)
    for entry in reviews.values():
        yield from _flush(entry, Document, source, options)


def _flush(
    entry: tuple[int, dict[str, Any]] | None,
    model: type[Interaction] | type[Document],
    source: str,
    options: LoadOptions,
) -> Iterator[Sourced]:
    if entry is not None:
        number, raw = entry
        yield build(model, raw, source, number, options)


def _parse(line: str, source: str, number: int) -> dict[str, Any]:
    record = parse_object(line, source, number)
    for field in _REQUIRED:
        if record.get(field) in (None, ""):
            raise IngestError(source, number, field, "missing required field of an Amazon review")
    return record
