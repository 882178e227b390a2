"""Ingest throughput with embeddings on real review corpora from ../shared/data (documents/s).

End to end: parse, validate, diff against the store, embed new documents, write one transaction.
The encoder is loaded before timing (its one-off load time is printed separately). For each
corpus the same texts are also encoded alone, so the table shows how much of ingest is the encoder.
Floor (issue #3): 400 documents/s on a 2-core machine with the bundled encoder.

    .venv/bin/python bench/ingest_throughput.py
    .venv/bin/python bench/ingest_throughput.py --encoders minilm --backends sqlite
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from uuid import uuid4

from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, text

from p13n.data import Document
from p13n.datasets import Sourced, load_amazon, load_jsonl
from p13n.encode import get_encoder
from p13n.ingest import ingest
from p13n.store import open_store

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CORPORA = {
    "convai2-replies": DATA / "convai2-personachat" / "valid_self_original_no_cands.txt",
    "huffpost-headlines": DATA
    / "huffpost-news-category-v3-head"
    / "News_Category_Dataset_v3_first10000.json",
    "amazon-gift-cards": DATA / "amazon-reviews-2018-small-5core" / "Gift_Cards_5.json.gz",
    "amazon-fashion": DATA / "amazon-reviews-2018-fashion-5core" / "AMAZON_FASHION_5.json",
    "amazon-small-5core": DATA / "amazon-reviews-2018-small-5core",
}
"""Short texts first. The first two have no loader of their own yet (text-task corpora come with
the evaluation issue); they are written to the generic JSONL format in a temporary folder here."""


def as_jsonl(corpus: str, folder: Path) -> Path:
    """ConvAI2 replies (one user per dialogue) or HuffPost headlines (one user per byline)."""
    path = folder / f"{corpus}.jsonl"
    with path.open("w", encoding="utf-8") as out:
        if corpus == "convai2-replies":
            dialogue = -1
            for line in CORPORA[corpus].read_text(encoding="utf-8").splitlines():
                number, _, rest = line.partition(" ")
                dialogue += number == "1"
                if "\t" in rest:
                    reply = rest.split("\t")[1]
                    out.write(
                        json.dumps(
                            {
                                "type": "document",
                                "user_id": f"dialogue-{dialogue}",
                                "kind": "reply",
                                "text": reply,
                            }
                        )
                        + "\n"
                    )
        else:
            for line in CORPORA[corpus].read_text(encoding="utf-8").splitlines():
                article = json.loads(line)
                if article["authors"]:
                    out.write(
                        json.dumps(
                            {
                                "type": "document",
                                "id": article["link"],
                                "user_id": article["authors"],
                                "kind": "headline",
                                "text": article["headline"],
                                "timestamp": article["date"],
                                "metadata": {"link": article["link"]},
                            }
                        )
                        + "\n"
                    )
    return path


def loader(corpus: str, folder: Path) -> Callable[[], Iterator[Sourced]]:
    if corpus.startswith("amazon"):
        return lambda: load_amazon(CORPORA[corpus])
    path = as_jsonl(corpus, folder)
    return lambda: load_jsonl(path)


FLOOR = 400.0


def run(
    corpus: str,
    load: Callable[[], Iterator[Sourced]],
    encoder_name: str,
    url: str,
    console: Console,
) -> dict[str, object]:
    encoder = get_encoder(encoder_name)
    records = list(load())  # parsed once here only to count tokens
    texts = [r.record.embedding_text for r in records if isinstance(r.record, Document)]
    tokenizer = _tokenizer()
    tokens = sum(min(len(ids), 256) for ids in tokenizer(texts)["input_ids"])

    store = open_store(url)
    started = time.perf_counter()
    report = ingest(store, load(), encoder=encoder)
    ingest_s = time.perf_counter() - started
    store.close()

    distinct = sorted(set(texts), key=len, reverse=True)
    started = time.perf_counter()
    encoder.encode(distinct)
    encode_s = time.perf_counter() - started
    row = {
        "corpus": corpus,
        "encoder": encoder_name,
        "backend": url.split(":")[0],
        "documents": report.counts["document"].added,
        "distinct_texts": len(distinct),
        "records": report.records,
        "mean_tokens": round(tokens / len(texts), 1),
        "ingest_s": round(ingest_s, 2),
        "docs_per_s": round(report.counts["document"].added / ingest_s, 1),
        "encode_only_docs_per_s": round(len(texts) / encode_s, 1),
        "tokens_per_s": round(tokens / ingest_s),
    }
    console.log(row)
    return row


def _tokenizer():  # type: ignore[no-untyped-def]
    from p13n.encode.minilm import _load

    return _load("float32").tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpora", default=",".join(CORPORA))
    parser.add_argument("--encoders", default="minilm,minilm-torch,minilm-bf16")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--out", type=Path, default=Path("bench/out/ingest_throughput.json"))
    args = parser.parse_args()
    console = Console(width=160)

    loads = {}
    for name in args.encoders.split(","):
        started = time.perf_counter()
        get_encoder(name).encode(["warm up"])
        loads[name] = time.perf_counter() - started
    console.print(
        "encoder load (once per process): " + ", ".join(f"{k} {v:.1f}s" for k, v in loads.items())
    )

    rows = []
    engine = create_engine(args.postgres.replace("postgresql://", "postgresql+psycopg://"))
    with tempfile.TemporaryDirectory() as folder:
        for corpus in args.corpora.split(","):
            load = loader(corpus, Path(folder))
            for encoder_name in args.encoders.split(","):
                for backend in args.backends.split(","):
                    if backend == "sqlite":
                        url = f"sqlite:///{Path(folder) / f'{uuid4().hex}.db'}"
                        rows.append(run(corpus, load, encoder_name, url, console))
                        continue
                    schema = f"p13n_bench_{uuid4().hex[:8]}"
                    with engine.begin() as c:
                        c.execute(text(f'CREATE SCHEMA "{schema}"'))
                    try:
                        url = f"{args.postgres}?options=-csearch_path%3D{schema}"
                        rows.append(run(corpus, load, encoder_name, url, console))
                    finally:
                        with engine.begin() as c:
                            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))

    table = Table(title="ingest with embeddings (documents/s, end to end)", title_justify="left")
    columns = [
        "corpus",
        "encoder",
        "backend",
        "documents",
        "mean tokens",
        "ingest s",
        "docs/s",
        "encode-only docs/s",
        "ingest / encode-only",
        "docs/s / 400 floor",
    ]
    for column in columns:
        table.add_column(
            column, justify="left" if column in ("corpus", "encoder", "backend") else "right"
        )
    for r in rows:
        table.add_row(
            str(r["corpus"]),
            str(r["encoder"]),
            str(r["backend"]),
            f"{r['documents']:,}",
            str(r["mean_tokens"]),
            str(r["ingest_s"]),
            str(r["docs_per_s"]),
            str(r["encode_only_docs_per_s"]),
            f"{float(r['docs_per_s']) / float(r['encode_only_docs_per_s']):.2f}",  # type: ignore[arg-type]
            f"{float(r['docs_per_s']) / FLOOR:.2f}",  # type: ignore[arg-type]
        )
    console.print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"encoder_load_s": loads, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
