"""Fetch one user's 1,000 documents with their embeddings from a store of 100,000 users.

Generates the store (random text and random unit vectors: this measures the store, not the
encoder), then times ``document_embeddings(user, encoder)`` for users holding 1,000 documents,
on SQLite and on the real PostgreSQL, side by side. Floor (issue #3): p99 under 20 ms for both.

    .venv/bin/python bench/fetch_latency.py                # 100,000 users, both backends
    .venv/bin/python bench/fetch_latency.py --users 10000  # quicker
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from uuid import uuid4

import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table
from sqlalchemy import create_engine, text

from p13n.data import Document
from p13n.store import Store, WriteSet, open_store

ENCODER = "bench-random-384"
DIM = 384
WORDS = [
    "the",
    "a",
    "of",
    "style",
    "review",
    "long",
    "short",
    "quiet",
    "bright",
    "movie",
    "book",
    "note",
    "cache",
    "fast",
    "slow",
    "warm",
    "cold",
    "team",
    "plan",
    "ship",
    "read",
    "write",
    "user",
    "model",
    "data",
    "small",
    "large",
    "river",
    "city",
    "night",
]
FLOOR_MS = 20.0


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def populate(
    store: Store, users: int, docs_per_user: int, heavy: int, heavy_docs: int
) -> list[str]:
    """Background users with a few documents each, plus ``heavy`` users with ``heavy_docs``."""
    rng = random.Random(7)
    vectors = np.random.default_rng(7)
    heavy_ids = [f"heavy-{n}" for n in range(heavy)]
    owners = [(f"user-{n:06d}", docs_per_user) for n in range(users - heavy)]
    owners += [(user, heavy_docs) for user in heavy_ids]
    step = max(1, 20_000 // docs_per_user)
    for start in track(range(0, len(owners), step), description=f"populating {store.backend}"):
        chunk = owners[start : start + step]
        documents = [
            Document(
                id=f"d{n}",
                user_id=user,
                kind="post",
                text=sentence(rng, 30),
                timestamp=1_600_000_000 + n * 3600,
            )
            for user, count in chunk
            for n in range(count)
        ]
        matrix = vectors.standard_normal((len(documents), DIM)).astype(np.float32)
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        store.write(
            WriteSet(
                implicit_user_ids=[user for user, _ in chunk],
                documents=documents,
                encoder_id=ENCODER,
                document_vectors={
                    (d.user_id, d.id): v for d, v in zip(documents, matrix, strict=True)
                },
            )
        )
    return heavy_ids


def measure(store: Store, users: list[str], repeats: int, expected: int) -> list[float]:
    rng = random.Random(11)
    for user in users:  # one warm-up read per user
        store.document_embeddings(user, ENCODER)
    timings = []
    for _ in range(repeats):
        user = rng.choice(users)
        started = time.perf_counter()
        embedded = store.document_embeddings(user, ENCODER)
        timings.append((time.perf_counter() - started) * 1000)
        assert embedded.vectors.shape == (expected, DIM), embedded.vectors.shape
    return timings


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--docs-per-user", type=int, default=3)
    parser.add_argument("--heavy-users", type=int, default=20)
    parser.add_argument("--heavy-docs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=500)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--out", type=Path, default=Path("bench/out/fetch_latency.json"))
    args = parser.parse_args()

    console = Console(width=140)
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for backend in args.backends.split(","):
            schema = None
            if backend == "sqlite":
                url = f"sqlite:///{Path(folder) / 'bench.db'}"
            else:
                schema = f"p13n_bench_{uuid4().hex[:8]}"
                engine = create_engine(
                    args.postgres.replace("postgresql://", "postgresql+psycopg://")
                )
                with engine.begin() as c:
                    c.execute(text(f'CREATE SCHEMA "{schema}"'))
                url = f"{args.postgres}?options=-csearch_path%3D{schema}"
            try:
                store = open_store(url)
                started = time.perf_counter()
                heavy = populate(
                    store, args.users, args.docs_per_user, args.heavy_users, args.heavy_docs
                )
                build_s = time.perf_counter() - started
                if backend == "postgres":
                    with store.engine.begin() as c:  # type: ignore[attr-defined]
                        c.execute(text("ANALYZE"))
                documents = (
                    args.users - args.heavy_users
                ) * args.docs_per_user + args.heavy_users * args.heavy_docs
                timings = measure(store, heavy, args.repeats, args.heavy_docs)
                results.append(
                    {
                        "backend": backend,
                        "users": store.count_users(),
                        "documents": documents,
                        "build_s": round(build_s, 1),
                        "fetches": len(timings),
                        "p50_ms": round(percentile(timings, 50), 2),
                        "p99_ms": round(percentile(timings, 99), 2),
                        "mean_ms": round(statistics.fmean(timings), 2),
                    }
                )
                store.close()
            finally:
                if schema is not None:
                    with engine.begin() as c:
                        c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                    engine.dispose()

    table = Table(
        title=f"fetch {args.heavy_docs} documents + {DIM}-d embeddings of one user",
        title_justify="left",
    )
    for column in (
        "backend",
        "users",
        "documents",
        "build s",
        "fetches",
        "p50 ms",
        "p99 ms",
        "mean ms",
        "p99 / 20 ms floor",
    ):
        table.add_column(column, justify="left" if column == "backend" else "right")
    for r in results:
        table.add_row(
            r["backend"],
            f"{r['users']:,}",
            f"{r['documents']:,}",
            str(r["build_s"]),
            str(r["fetches"]),
            str(r["p50_ms"]),
            str(r["p99_ms"]),
            str(r["mean_ms"]),
            f"{r['p99_ms'] / FLOOR_MS:.2f}",
        )
    console.print(table)
    if len(results) == 2:
        a, b = results
        console.print(f"p99 {b['backend']} / {a['backend']}: {b['p99_ms'] / a['p99_ms']:.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
