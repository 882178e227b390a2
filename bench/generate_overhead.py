"""Personalization overhead and memory of ``Personalizer.generate`` with the embedded model.

Builds a store of real per-author data (HuffPost articles; each synthetic user gets 30
articles of one author's category, with their embeddings), then, in this one process:

1. overhead: for 30 requests, everything but decoding (data-version check, query, retrieval,
   prompt building with the model's tokenizer) as a fraction of end-to-end ``generate``,
   with max_new_tokens=64. Floor (issue #4): under 5%.
2. memory: ``generate`` for N different users (default 1,000; max_new_tokens=4 to keep the run
   short: memory does not depend on answer length), with the corpus cache bounded at
   ``--cache-size`` users; reports RSS after loading and peak RSS. Floor: under 1.5 GB.

    .venv/bin/python bench/generate_overhead.py
    .venv/bin/python bench/generate_overhead.py --users 200   # quicker
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.progress import track
from rich.table import Table

from p13n.data import Document
from p13n.datasets import Sourced
from p13n.encode import get_encoder
from p13n.ingest import ingest
from p13n.llm import GenerationOptions, get_llm
from p13n.personalize import Personalizer, PersonalizerConfig
from p13n.retrieve import RetrieverConfig
from p13n.store import open_store

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HUFFPOST = DATA / "huffpost-news-category-v3-head" / "News_Category_Dataset_v3_first10000.json"
DOCS_PER_USER = 30


def rss_mb() -> float:
    with open("/proc/self/status", encoding="utf-8") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_users(n_users: int, seed: int) -> list[Sourced]:
    """N users, each with 30 articles drawn from one category (a stable topical profile)."""
    articles = [json.loads(line) for line in HUFFPOST.read_text(encoding="utf-8").splitlines()]
    by_category: dict[str, list[dict[str, str]]] = defaultdict(list)
    for a in articles:
        if a["short_description"].strip():
            by_category[a["category"]].append(a)
    categories = sorted(c for c, items in by_category.items() if len(items) >= DOCS_PER_USER)
    rng = random.Random(seed)
    records: list[Sourced] = []
    for u in range(n_users):
        chosen = rng.sample(by_category[categories[u % len(categories)]], DOCS_PER_USER)
        for a in chosen:
            document = Document(
                user_id=f"user-{u:04d}",
                kind="article",
                title=a["headline"],
                text=a["short_description"],
                timestamp=a["date"],
            )
            records.append(Sourced(document, "huffpost"))
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--cache-size", type=int, default=256)
    parser.add_argument("--retriever", default="hybrid")
    parser.add_argument("--out", type=Path, default=Path("bench/out/generate_overhead.json"))
    args = parser.parse_args()
    console = Console()

    with tempfile.TemporaryDirectory() as folder:
        store = open_store(f"sqlite:///{folder}/bench.db")
        encoder = get_encoder()
        with console.status(f"ingesting {args.users} users x {DOCS_PER_USER} articles"):
            report = ingest(store, build_users(args.users, seed=7), encoder=encoder)
        console.print(f"ingested {report.embedded} texts in {report.seconds:.0f} s")
        rss_before_model = rss_mb()
        llm = get_llm()
        encoder.encode(["warm up"])
        rss_loaded = rss_mb()

        def personalizer(max_new_tokens: int) -> Personalizer:
            config = PersonalizerConfig(
                task="lamp4",
                retriever=RetrieverConfig(name=args.retriever, k=4, cache_size=args.cache_size),
                generation=GenerationOptions(max_new_tokens=max_new_tokens),
            )
            return Personalizer(store, config, llm=llm, encoder=encoder)

        inputs = [
            "Scientists say the heat wave will last through the weekend across the region.",
            "The team won its third straight title after a dramatic overtime finish.",
            "A new bill would cap the price of insulin for people on private insurance.",
        ]
        full = personalizer(64)
        full.generate("user-0000", inputs[0])  # first-call costs (imports, graph warm-up)
        overheads, totals, cold = [], [], []
        for n in track(range(args.requests), description="overhead", console=console):
            user = f"user-{(n * 37) % args.users:04d}"
            result = full.generate(user, inputs[n % len(inputs)])
            overheads.append(result.trace.timings.overhead_ms)
            totals.append(result.trace.timings.total_ms)
        fraction = sum(overheads) / sum(totals)

        served = personalizer(4)
        started = time.perf_counter()
        for u in track(range(args.users), description="memory", console=console):
            result = served.generate(f"user-{u:04d}", inputs[u % len(inputs)])
            cold.append(result.trace.timings.overhead_ms)
        serve_s = time.perf_counter() - started
        stats = served.loader.stats
        peak = peak_rss_mb()
        store.close()

    table = Table(title="Personalizer.generate with the embedded model", title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = {
        "requests (max_new_tokens=64)": f"{args.requests}",
        "mean end-to-end (ms)": f"{statistics.fmean(totals):.0f}",
        "mean overhead, everything but decoding (ms)": f"{statistics.fmean(overheads):.1f}",
        "overhead fraction": f"{fraction:.2%}",
        f"users served once each ({args.retriever}, max_new_tokens=4)": f"{args.users}",
        "overhead per first request of a user, p50 / p99 (ms)": (
            f"{statistics.median(cold):.1f} / {statistics.quantiles(cold, n=100)[98]:.1f}"
        ),
        "time to serve them (s)": f"{serve_s:.0f}",
        "corpus cache: entries kept / evicted": f"{stats.cached} / {stats.evictions}",
        "RSS before the model (MB)": f"{rss_before_model:.0f}",
        "RSS with model + encoder loaded (MB)": f"{rss_loaded:.0f}",
        "peak RSS (MB)": f"{peak:.0f}",
    }
    for key, value in rows.items():
        table.add_row(key, value)
    console.print(table)
    console.print(
        f"overhead {fraction:.2%} ({'meets' if fraction < 0.05 else 'MISSES'} the 5% floor); "
        f"peak RSS {peak:.0f} MB ({'meets' if peak < 1536 else 'MISSES'} the 1.5 GB floor)"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "overhead_fraction": fraction,
                "overhead_ms": overheads,
                "total_ms": totals,
                "first_request_overhead_ms": cold,
                "peak_rss_mb": peak,
                "rss_loaded_mb": rss_loaded,
                "users": args.users,
                "cache_size": args.cache_size,
                "evictions": stats.evictions,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
