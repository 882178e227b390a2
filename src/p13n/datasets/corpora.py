"""Per-user text corpora, read as plain records for building benchmark tasks (``tasks.py``).

Each loader yields ``CorpusRecord``s: who wrote it, when (ISO date, if the corpus has one), and
the record's text fields under the corpus's own names. Every record of one loader has the same
field names (a missing optional value is ``""``), so a recipe naming a field fails on the first
record, not somewhere in the middle. Malformed input is an ``IngestError`` naming file and line.

Loaders, by registry name:

- ``huffpost``: HuffPost News Category v3 JSON lines, one author per byline string; records with
  an empty byline are skipped (they belong to nobody), repeated links are read once.
- ``aeslc``: AESLC ``aeslc_sent_by_user.jsonl``, emails per sender, in mailbox order.
- ``s2-profiles``: Semantic Scholar researcher profiles (``participants/`` + ``papers/``).
- ``amazon-reviews``: Amazon Review Data 2018 files, copies of one review collapsed.
- ``convai2``: ConvAI2 / PersonaChat FbDialog text, one user per dialogue.
- ``documents``: the documents of a p13n generic JSON-lines file (e.g. the bundled demo).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from p13n.data import Document, stable_id
from p13n.datasets.amazon import amazon_files
from p13n.datasets.generic import load_jsonl
from p13n.datasets.source import parse_object, read_lines
from p13n.errors import IngestError
from p13n.registry import Registry


@dataclass(frozen=True)
class CorpusRecord:
    """One thing a user wrote. ``id`` is unique per user; ``date`` is ISO 8601 or ``None``;
    ``source`` and ``line`` say where it was read, for errors."""

    user_id: str
    id: str
    date: str | None
    fields: dict[str, str]
    source: str = ""
    line: int | None = None


CorpusReader = Callable[[Path], Iterator[CorpusRecord]]
"""Reads a corpus file or folder into records (not ``retrieve.CorpusLoader``, which reads a
user's stored data); registered in ``corpus_loaders`` under the name a recipe's ``loader`` gives."""
corpus_loaders: Registry[CorpusReader] = Registry("corpus loader")


def _files(path: Path, *patterns: str) -> list[Path]:
    if path.is_dir():
        files = sorted({file for pattern in patterns for file in path.glob(pattern)})
        if not files:
            raise IngestError(str(path), None, None, f"no {' or '.join(patterns)} files here")
        return files
    if not path.exists():
        raise IngestError(str(path), None, None, "no such file or folder")
    return [path]


def _text(raw: dict[str, Any], name: str, source: str, line: int | None, *, required: bool) -> str:
    value = raw.get(name)
    if value is None:
        if required:
            raise IngestError(source, line, name, "missing")
        return ""
    if not isinstance(value, str):
        raise IngestError(source, line, name, f"expected a string, got {type(value).__name__}")
    return value


def _iso_date(value: str, source: str, line: int, name: str) -> str:
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise IngestError(source, line, name, f"{value!r} is not a YYYY-MM-DD date") from None


# --- HuffPost News Category -----------------------------------------------------------------

_HUFFPOST_FIELDS = ("link", "headline", "category", "short_description", "authors", "date")


@corpus_loaders.decorator("huffpost")
def load_huffpost(path: Path) -> Iterator[CorpusRecord]:
    """Articles per byline: ``headline``, ``short_description``, ``category``, ``link``,
    ``authors`` (the byline, also the user id)."""
    seen: set[str] = set()
    for file in _files(Path(path), "*.json", "*.jsonl"):
        source = str(file)
        for number, line in read_lines(file):
            if not line.strip():
                continue
            raw = parse_object(line, source, number)
            fields = {
                name: _text(raw, name, source, number, required=True) for name in _HUFFPOST_FIELDS
            }
            day = _iso_date(fields["date"], source, number, "date")
            if fields["link"] in seen:  # the v3 release repeats a few records verbatim
                continue
            seen.add(fields["link"])
            byline = fields["authors"].strip()
            if not byline:
                continue
            yield CorpusRecord(
                byline, stable_id("huffpost", fields["link"]), day, fields, source, number
            )


# --- AESLC --------------------------------------------------------------------------------


def _message_number(file: str) -> int:
    # "enron_subject_line/dev/allen-p_sent_289.subject" -> 289: Enron's maildir numbers a
    # folder's messages in arrival order, the closest thing to a date this corpus has.
    tail = Path(file).stem.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else -1


@corpus_loaders.decorator("aeslc")
def load_aeslc(path: Path) -> Iterator[CorpusRecord]:
    """Sent emails per sender: ``email_body``, ``subject``, ``split`` (AESLC's own), ``file``,
    ``ann0``-``ann2`` (human subjects, dev/test only). Per sender in mailbox order; no dates."""
    records: list[CorpusRecord] = []
    for file in _files(Path(path), "*.jsonl"):
        source = str(file)
        for number, line in read_lines(file):
            if not line.strip():
                continue
            raw = parse_object(line, source, number)
            fields = {
                name: _text(raw, name, source, number, required=True)
                for name in ("user", "split", "file", "email_body", "subject")
            }
            for name in ("ann0", "ann1", "ann2"):
                fields[name] = _text(raw, name, source, number, required=False)
            if not fields["user"].strip():
                raise IngestError(source, number, "user", "empty sender")
            record_id = Path(fields["file"]).stem
            records.append(CorpusRecord(fields["user"], record_id, None, fields, source, number))
    records.sort(key=lambda r: (r.user_id, _message_number(r.fields["file"]), r.id))
    yield from records


# --- Semantic Scholar researcher profiles ---------------------------------------------------


def _json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IngestError(str(path), None, None, "no such file") from None
    except UnicodeDecodeError as error:
        raise IngestError(str(path), None, None, f"invalid UTF-8 at byte {error.start}") from None
    except json.JSONDecodeError as error:
        raise IngestError(
            str(path), error.lineno, None, f"malformed JSON: {error.msg} at column {error.colno}"
        ) from None


def _paper(path: Path) -> dict[str, str]:
    source = str(path)
    raw = _json_file(path)
    if not isinstance(raw, dict):
        raise IngestError(source, None, None, "expected a JSON object")
    year = raw.get("year")
    if year is not None and (isinstance(year, bool) or not isinstance(year, int)):
        raise IngestError(source, None, "year", f"expected an integer year, got {year!r}")
    authors = raw.get("authors") or []
    if not isinstance(authors, list) or not all(isinstance(a, str) for a in authors):
        raise IngestError(source, None, "authors", "expected a list of names")
    return {
        "title": _text(raw, "title", source, None, required=True),
        "abstract": _text(raw, "abstract", source, None, required=False),
        "year": "" if year is None else str(year),
        "authors": "; ".join(authors),
    }


@corpus_loaders.decorator("s2-profiles")
def load_s2_profiles(path: Path) -> Iterator[CorpusRecord]:
    """Papers per researcher (``participants/*.json`` naming ``papers/*.json``): ``title``,
    ``abstract`` (``""`` when absent), ``year``, ``authors``, ``author_name``. No dates (years
    only); each profile is ordered by year, so the latest papers come last."""
    root = Path(path)
    participants = _files(root / "participants", "*.json")
    papers: dict[str, dict[str, str]] = {}
    for file in participants:
        source = str(file)
        raw = _json_file(file)
        if not isinstance(raw, dict):
            raise IngestError(source, None, None, "expected a JSON object")
        author = _text(raw, "authorId", source, None, required=True)
        name = _text(raw, "name", source, None, required=False)
        listed = raw.get("papers")
        if not isinstance(listed, list):
            raise IngestError(source, None, "papers", "expected a list of {'paperId': ...}")
        ids: list[str] = []
        for entry in listed:
            paper_id = entry.get("paperId") if isinstance(entry, dict) else None
            if not isinstance(paper_id, str) or not paper_id or "/" in paper_id:
                raise IngestError(source, None, "papers", f"bad paper entry {entry!r}")
            if paper_id not in ids:
                ids.append(paper_id)
        for paper_id in ids:
            if paper_id not in papers:
                paper_file = root / "papers" / f"{paper_id}.json"
                if not paper_file.exists():
                    raise IngestError(
                        source, None, "papers", f"paper {paper_id} has no file {paper_file}"
                    )
                papers[paper_id] = _paper(paper_file)

        def order(paper_id: str) -> tuple[int, str]:
            return (int(papers[paper_id]["year"] or 0), paper_id)

        for paper_id in sorted(ids, key=order):
            fields = {**papers[paper_id], "author_name": name}
            yield CorpusRecord(author, paper_id, None, fields, str(root / "papers"), None)


# --- Amazon Review Data (2018) --------------------------------------------------------------


def _rating(value: object, source: str, line: int) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise IngestError(source, line, "overall", f"expected a number 1-5, got {value!r}")
    if value not in (1, 2, 3, 4, 5):
        raise IngestError(source, line, "overall", f"{value!r} is not a whole rating 1-5")
    return str(int(value))


@corpus_loaders.decorator("amazon-reviews")
def load_amazon_reviews(path: Path) -> Iterator[CorpusRecord]:
    """Reviews with text per reviewer: ``reviewText``, ``summary``, ``rating`` (``"1"``-``"5"``),
    ``asin`` (the first product), ``asins`` (every product the review was copied to),
    ``category`` (from the file name), ``verified``. The 2018 release repeats a review across
    product variants: copies (same reviewer, text and time) are one record, as in ``amazon.py``."""
    for file in amazon_files(Path(path)):
        source = str(file)
        category = file.name.removesuffix(".gz").removesuffix(".json").removesuffix("_5")
        reviews: dict[str, CorpusRecord] = {}
        for number, line in read_lines(file):
            if not line.strip():
                continue
            raw = parse_object(line, source, number)
            user = _text(raw, "reviewerID", source, number, required=True)
            asin = _text(raw, "asin", source, number, required=True)
            time = raw.get("unixReviewTime")
            if isinstance(time, bool) or not isinstance(time, int):
                raise IngestError(source, number, "unixReviewTime", f"not Unix seconds: {time!r}")
            try:
                day = datetime.fromtimestamp(time, tz=UTC).date().isoformat()
            except (OverflowError, OSError, ValueError):
                raise IngestError(
                    source, number, "unixReviewTime", f"{time} is out of range"
                ) from None
            rating = _rating(raw.get("overall"), source, number)
            text = raw.get("reviewText")
            if not (isinstance(text, str) and text.strip()):
                continue  # a rating without a review
            key = stable_id("amazon-review", user, text, time)
            if key in reviews:
                fields = reviews[key].fields
                fields["asins"] = " ".join(sorted({*fields["asins"].split(), asin}))
                continue
            summary = raw.get("summary")
            reviews[key] = CorpusRecord(
                user,
                key,
                day,
                {
                    "reviewText": text,
                    "summary": summary if isinstance(summary, str) else "",
                    "rating": rating,
                    "asin": asin,
                    "asins": asin,
                    "category": category,
                    "verified": "true" if raw.get("verified") is True else "false",
                },
                source,
                number,
            )
        yield from reviews.values()


# --- ConvAI2 / PersonaChat ------------------------------------------------------------------

CONTEXT_UTTERANCES = 5
"""Utterances of a turn's ``context``: the partner's line and the four before it."""
_PERSONA = "your persona:"


@corpus_loaders.decorator("convai2")
def load_convai2(path: Path) -> Iterator[CorpusRecord]:
    """One user per dialogue (``dialogue-0001`` ...), the speaker with the persona. Their
    persona sentences (``kind`` ``persona``, ``text``) come first, then one record per turn
    (``kind`` ``turn``): ``partner`` (what the partner said), ``text`` (the speaker's reply),
    ``context`` (the recent lines, ``partner: ...`` / ``you: ...``, ending with the partner's)
    and ``turn`` (1, 2, ...). Every record has all five fields."""
    for file in _files(Path(path), "*.txt"):
        source = str(file)
        dialogue = 0
        expected = 1
        history: list[str] = []
        turns = 0
        for number, line in read_lines(file):
            if not line.strip():
                continue
            index, space, rest = line.partition(" ")
            if not index.isdigit() or not space:
                raise IngestError(source, number, None, "expected '<number> <text>'")
            if int(index) == 1:
                dialogue, expected, history, turns = dialogue + 1, 1, [], 0
            if int(index) != expected or dialogue == 0:
                raise IngestError(source, number, None, f"line number {index}, not {expected}")
            expected += 1
            user = f"dialogue-{dialogue:04d}"
            empty = {"turn": "", "partner": "", "context": ""}
            if rest.startswith(_PERSONA):
                if turns:
                    raise IngestError(source, number, None, "persona line after the dialogue began")
                sentence = rest.removeprefix(_PERSONA).strip()
                yield CorpusRecord(
                    user,
                    f"{user}-p{int(index)}",
                    None,
                    {"kind": "persona", "text": sentence, **empty},
                    source,
                    number,
                )
                continue
            parts = rest.split("\t")
            if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
                raise IngestError(
                    source, number, None, "expected '<partner line>\\t<reply>' on a turn line"
                )
            partner, reply = (part.strip() for part in parts)
            turns += 1
            history.append(f"partner: {partner}")
            context = "\n".join(history[-CONTEXT_UTTERANCES:])
            history.append(f"you: {reply}")
            fields = {
                "kind": "turn",
                "text": reply,
                "turn": str(turns),
                "partner": partner,
                "context": context,
            }
            yield CorpusRecord(user, f"{user}-t{turns}", None, fields, source, number)


# --- p13n generic documents -----------------------------------------------------------------


@corpus_loaders.decorator("documents")
def load_documents(path: Path) -> Iterator[CorpusRecord]:
    """The documents of a p13n JSON-lines file (other record types are skipped): ``text``,
    ``title`` and ``kind``, dated by their timestamp."""
    for entry in load_jsonl(Path(path)):
        record = entry.record
        if not isinstance(record, Document):
            continue
        assert record.id is not None  # every record gets a stable id at validation
        yield CorpusRecord(
            record.user_id,
            record.id,
            record.timestamp.isoformat() if record.timestamp else None,
            {"text": record.text, "title": record.title or "", "kind": record.kind},
            entry.source,
            entry.line,
        )


__all__ = [
    "CONTEXT_UTTERANCES",
    "CorpusReader",
    "CorpusRecord",
    "corpus_loaders",
    "load_aeslc",
    "load_amazon_reviews",
    "load_convai2",
    "load_documents",
    "load_huffpost",
    "load_s2_profiles",
]
