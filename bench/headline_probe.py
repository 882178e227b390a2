"""A first look at whether retrieval helps the embedded model: LaMP-4-style headline generation
on HuffPost authors (not the issue-5 benchmark runner, which builds proper LaMP-format tasks).

Each of the N authors with the most articles (at least 8) in the HuffPost sample keeps their
latest article out: its short description is the input, its headline the reference; their
other articles (headline + description) are their profile. Every configuration answers the same
inputs with the same model, greedy, up to 24 tokens; ROUGE-1/L F1 from rouge-score (stemmed).
Win/loss counts compare each author's ROUGE-1 with the non-personalized baseline's.

    .venv/bin/python bench/headline_probe.py --authors 100      # about 15 minutes
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import track
from rich.table import Table
from rouge_score import rouge_scorer

from p13n.data import Document
from p13n.datasets import Sourced
from p13n.encode import get_encoder
from p13n.ingest import ingest
from p13n.llm import GenerationOptions, get_llm
from p13n.personalize import Personalizer, PersonalizerConfig
from p13n.retrieve import RetrieverConfig
from p13n.store import Store, open_store

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HUFFPOST = DATA / "huffpost-news-category-v3-head" / "News_Category_Dataset_v3_first10000.json"
CONFIGS: dict[str, dict[str, Any]] = {
    "non-personalized": {"prompt": "none"},
    "bm25 k=1": {"retriever": RetrieverConfig(name="bm25", k=1)},
    "bm25 k=2": {"retriever": RetrieverConfig(name="bm25", k=2)},
    "bm25 k=4": {"retriever": RetrieverConfig(name="bm25", k=4)},
    "bm25 k=8": {"retriever": RetrieverConfig(name="bm25", k=8)},
    "recency(bm25) k=4": {"retriever": RetrieverConfig(name="recency", k=4)},
    "hybrid k=4": {"retriever": RetrieverConfig(name="hybrid", k=4)},
}


def build(store: Store, authors: int) -> dict[str, dict[str, str]]:
    """Ingest the profiles; return each user's held-out article."""
    articles = [json.loads(line) for line in HUFFPOST.read_text(encoding="utf-8").splitlines()]
    by_author: dict[str, list[dict[str, str]]] = defaultdict(list)
    for a in articles:
        if a["authors"].strip() and a["short_description"].strip():
            by_author[a["authors"]].append(a)
    ranked = sorted(
        (name for name, items in by_author.items() if len(items) >= 8),
        key=lambda name: (-len(by_author[name]), name),
    )[:authors]
    held: dict[str, dict[str, str]] = {}
    records: list[Sourced] = []
    for n, name in enumerate(ranked):
        items = sorted(by_author[name], key=lambda a: (a["date"], a["headline"]))
        held[f"author-{n:03d}"] = items[-1]
        records += [
            Sourced(
                Document(
                    user_id=f"author-{n:03d}",
                    kind="article",
                    title=a["headline"],
                    text=a["short_description"],
                    timestamp=a["date"],
                ),
                "huffpost",
            )
            for a in items[:-1]
        ]
    ingest(store, records, encoder=get_encoder())
    return held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--authors", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("bench/out/headline_probe.json"))
    args = parser.parse_args()
    logging.getLogger("bm25s").setLevel(logging.WARNING)  # rouge-score's absl sets root to DEBUG
    console = Console()
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    llm, encoder = get_llm(), get_encoder()
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(f"sqlite:///{folder}/probe.db")
        held = build(store, args.authors)
        for name, extra in CONFIGS.items():
            config = PersonalizerConfig(
                task="lamp4", generation=GenerationOptions(max_new_tokens=24), **extra
            )
            personalizer = Personalizer(store, config, llm=llm, encoder=encoder)
            rouge1, rouge_l = [], []
            for user, article in track(held.items(), description=name, console=console):
                answer = personalizer.generate(user, article["short_description"]).text
                scores = scorer.score(article["headline"], answer.strip().strip('"'))
                rouge1.append(scores["rouge1"].fmeasure)
                rouge_l.append(scores["rougeL"].fmeasure)
            results[name] = {"rouge1": rouge1, "rougeL": rouge_l}
        store.close()

    baseline = results["non-personalized"]["rouge1"]
    table = Table(
        title=f"LaMP-4-style headlines, {len(held)} HuffPost authors, SmolLM2-135M-Instruct",
        title_justify="left",
    )
    for column in ("configuration", "ROUGE-1", "ROUGE-L", "better / worse than baseline"):
        table.add_column(column, justify="left" if column == "configuration" else "right")
    for name, scores in results.items():
        better = sum(a > b for a, b in zip(scores["rouge1"], baseline, strict=True))
        worse = sum(a < b for a, b in zip(scores["rouge1"], baseline, strict=True))
        table.add_row(
            name,
            f"{statistics.fmean(scores['rouge1']):.4f}",
            f"{statistics.fmean(scores['rougeL']):.4f}",
            "-" if name == "non-personalized" else f"{better} / {worse}",
        )
    console.print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
