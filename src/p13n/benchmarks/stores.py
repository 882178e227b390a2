"""The benchmarks' stores: each example's profile as one user's documents, in SQLite files
built once per content and kept in the cache."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.progress import Progress

from p13n.data import Document, User
from p13n.datasets import Sourced
from p13n.datasets.lamp import LampExample, LampSplit, profile_text, profile_title
from p13n.encode import Encoder
from p13n.ingest import ingest
from p13n.store import Store, open_store

STORE_FORMAT = 1
"""Format of a cached store: bumped whenever the same content would be stored differently."""


def fingerprint(*parts: object) -> str:
    """A short digest of JSON-able parts (what a cached store was built from)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:20]


def cached_store(path: Path, build: Callable[[Store], None]) -> Store:
    """The SQLite store at ``path``; built by ``build`` first when there is none. It is built
    as a ``.partial`` file renamed when complete, so only a whole store is ever reused."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        store = open_store(f"sqlite:///{partial}")
        try:
            build(store)
        finally:
            store.close()
        partial.rename(path)
    return open_store(f"sqlite:///{path}")


def questions_digest(folder: Path, split: str) -> str:
    """sha256 of a split's questions file (profiles and inputs): what a cached store holds."""
    questions = folder / f"{split}_questions.json"
    if not questions.exists():
        questions = folder / split / f"{split}_questions.json"
    return hashlib.sha256(questions.read_bytes()).hexdigest()


def profile_records(split: LampSplit, examples: Sequence[LampExample]) -> tuple[list[Sourced], int]:
    """Each example as one user whose documents are its profile items; also how many items
    were skipped for having no text."""
    records: list[Sourced] = []
    skipped = 0
    spec = split.spec
    for example in examples:
        source = f"{split.spec.name}/{split.split}/{example.id}"
        records.append(Sourced(User(id=example.id), source))
        for n, item in enumerate(example.profile):
            text = profile_text(item, spec).strip()
            if not text:
                skipped += 1  # counted and reported: an item with no text cannot be retrieved
                continue
            date = item.get(spec.profile_date) if spec.profile_date else None
            records.append(
                Sourced(
                    Document.model_validate(
                        {
                            "id": f"{example.id}.{n}",
                            "user_id": example.id,
                            "kind": "profile",
                            "text": text,
                            "title": profile_title(item, spec) or None,
                            "timestamp": date or None,
                        }
                    ),
                    source,
                    n,
                )
            )
    return records, skipped


def split_store(
    cache: Path,
    folder: Path,
    split: LampSplit,
    examples: Sequence[LampExample],
    encoder: Encoder,
    progress: Progress,
) -> tuple[Store, int]:
    """The split's examples as users of a store cached under ``cache``, and how many items had
    no text."""
    digest = questions_digest(folder, split.split)
    ids = [e.id for e in examples]
    key = fingerprint(STORE_FORMAT, digest, split.spec.to_dict(), ids, encoder.id)
    path = cache / "stores" / f"{split.spec.name}-{split.split}-{key}.db"
    records, skipped = profile_records(split, examples)

    def build(store: Store) -> None:
        bar = progress.add_task(f"{split.spec.name}: storing profiles", total=None)
        ingest(store, records, encoder=encoder)
        progress.remove_task(bar)

    return cached_store(path, build), skipped
