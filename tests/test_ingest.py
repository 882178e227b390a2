"""Ingest: idempotent, updates in place, embeds only what changed, safe under concurrency."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from p13n.datasets import load_amazon, load_jsonl
from p13n.encode import Encoder
from p13n.ingest import ingest
from p13n.store import Store, open_store
from tests.helpers import dump, write_jsonl


def test_reingesting_the_same_data_is_a_no_op(
    store: Store, shared_data: Path, encoder: Encoder
) -> None:
    path = shared_data / "amazon-reviews-2018-fashion-5core" / "AMAZON_FASHION_5.json"
    first = ingest(store, load_amazon(path), encoder=encoder)
    assert first.counts["document"].added == 445 and first.embedded == 445
    assert first.counts["interaction"].added == first.records - 445
    assert store.count_users() == 406
    before = dump(store)
    again = ingest(store, load_amazon(path), encoder=encoder)
    assert again.written == 0 and again.embedded == 0
    assert again.counts["document"].unchanged == 445
    assert dump(store) == before


def test_vectors_are_the_encoders_output(store: Store, tmp_path: Path, encoder: Encoder) -> None:
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [
            {"type": "document", "user_id": "u", "title": "Pasta", "text": "Lemon and butter."},
            {"type": "document", "user_id": "u", "text": "Compilers are fun."},
            {"type": "item", "id": "i", "title": "A film", "text": "About space."},
        ],
    )
    ingest(store, load_jsonl(path), encoder=encoder)
    embedded = store.document_embeddings("u", encoder.id)
    expected = encoder.encode([d.embedding_text for d in embedded.documents])
    np.testing.assert_allclose(embedded.vectors, expected, atol=1e-6)
    assert embedded.documents[0].embedding_text in (
        "Pasta\nLemon and butter.",
        "Compilers are fun.",
    )
    np.testing.assert_allclose(
        store.item_vectors(["i"], encoder.id)["i"],
        encoder.encode(["A film\nAbout space."])[0],
        atol=1e-6,
    )


def test_a_changed_record_is_updated_and_re_embedded(
    store: Store, tmp_path: Path, encoder: Encoder
) -> None:
    old = write_jsonl(
        tmp_path / "old.jsonl",
        [
            {"type": "document", "id": "d1", "user_id": "u", "text": "old words"},
            {"type": "document", "id": "d2", "user_id": "u", "text": "stays"},
        ],
    )
    new = write_jsonl(
        tmp_path / "new.jsonl",
        [
            {"type": "document", "id": "d1", "user_id": "u", "text": "new words"},
            {"type": "document", "id": "d2", "user_id": "u", "text": "stays"},
        ],
    )
    ingest(store, load_jsonl(old), encoder=encoder)
    report = ingest(store, load_jsonl(new), encoder=encoder)
    assert (report.counts["document"].updated, report.counts["document"].unchanged) == (1, 1)
    assert report.embedded == 1
    embedded = store.document_embeddings("u", encoder.id)
    by_id = dict(zip([d.id for d in embedded.documents], embedded.vectors, strict=True))
    np.testing.assert_allclose(by_id["d1"], encoder.encode(["new words"])[0], atol=1e-6)


def test_without_an_encoder_nothing_is_embedded_until_asked(
    store: Store, tmp_path: Path, encoder: Encoder
) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"type": "document", "user_id": "u", "text": "t"}])
    assert ingest(store, load_jsonl(path), encoder=None).embedded == 0
    assert len(store.document_embeddings("u", encoder.id).missing) == 1
    # The same data again, now with an encoder: nothing changed, but the missing vector is made.
    report = ingest(store, load_jsonl(path), encoder=encoder)
    assert report.written == 0 and report.embedded == 1
    assert store.document_embeddings("u", encoder.id).missing == []


def test_referenced_users_are_created_without_attributes(store: Store, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [
            {"type": "interaction", "user_id": "a", "item_id": "i", "kind": "view"},
            {"type": "persona", "id": "p", "description": "d", "members": ["b"]},
            {
                "type": "preference",
                "persona_id": "p",
                "prompt": "q",
                "chosen": "x",
                "rejected": "y",
            },
        ],
    )
    report = ingest(store, load_jsonl(path), encoder=None)
    assert report.users_referenced == 2
    assert [s.user.id for s in store.list_users()] == ["a", "b"]
    assert len(store.persona_preferences("p")) == 1


CONCURRENT_WRITER = """
import sys
from pathlib import Path
from p13n.datasets import load_jsonl
from p13n.ingest import ingest
from p13n.store import open_store
store = open_store(sys.argv[1])
for path in sys.argv[2:]:
    ingest(store, load_jsonl(Path(path)), encoder=None)
"""


def run_writers(url: str, batches: list[list[Path]]) -> None:
    """One process per list of files, all ingesting into ``url`` at once; each must succeed."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_WRITER, url, *map(str, paths)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for paths in batches
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr


def test_concurrent_ingest_from_processes_loses_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"  # created by the racing processes themselves
    batches: list[list[Path]] = []
    expected: set[tuple[str, str]] = set()
    for writer in range(4):
        paths = []
        for batch in range(5):
            records = [
                # Every writer also writes the same shared records: overlapping upserts.
                {
                    "type": "interaction",
                    "user_id": f"u{n % 50}",
                    "item_id": f"i{n}",
                    "kind": "view",
                    "timestamp": n,
                }
                for n in range(writer * 1000 + batch * 200, writer * 1000 + batch * 200 + 200)
            ] + [
                {
                    "type": "document",
                    "user_id": "shared",
                    "id": f"s{batch}",
                    "text": f"shared {batch}",
                }
            ]
            paths.append(write_jsonl(tmp_path / f"w{writer}-b{batch}.jsonl", records))
            expected.update((r["user_id"], r.get("item_id", r.get("id"))) for r in records)
        batches.append(paths)
    run_writers(url, batches)
    store = open_store(url)
    found = {(i.user_id, i.item_id) for u in range(50) for i in store.interactions(f"u{u}")}
    found |= {("shared", d.id) for d in store.documents("shared")}
    assert found == expected
    assert len(found) == 4 * 5 * 201 - 3 * 5  # the shared documents count once


@pytest.mark.postgres
def test_concurrent_ingest_into_postgres(postgres_url: str, tmp_path: Path) -> None:
    paths = [
        write_jsonl(
            tmp_path / f"w{w}.jsonl",
            [
                {"type": "document", "user_id": f"u{n % 7}", "text": f"writer {w} text {n}"}
                for n in range(300)
            ]
            + [{"type": "document", "user_id": "shared", "id": "same", "text": "same everywhere"}],
        )
        for w in range(3)
    ]
    run_writers(postgres_url, [[path] for path in paths])
    store = open_store(postgres_url)
    assert sum(store.user_counts(f"u{u}").documents for u in range(7)) == 900
    assert [d.id for d in store.documents("shared")] == ["same"]


def test_jsonl_lines_need_a_type(tmp_path: Path) -> None:
    from p13n.errors import IngestError

    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"user_id": "u", "text": "t"}) + "\n")
    with pytest.raises(IngestError, match=r"x\.jsonl:1: field 'type'"):
        list(load_jsonl(path))
