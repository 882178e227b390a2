"""How much persona prompting personalizes the embedded model, on DSP (Cheng et al. 2023).

Each of N DSP queries (seeded sample) is answered for four users, one per domain persona
(academy, business, entertainment, literature), through the Personalizer with the ``persona``
prompt builder, and once more per user without personalization (``none``). The golds are the
four domain answers. Reported per configuration:

* EGISES degree (p13n.evaluate.degree; 1 = outputs differ across users as much as the golds,
  0 = not at all) with 1 - ROUGE-1 F1 and with Jensen-Shannon divergence as the distance;
* ROUGE-1 F1 of each user's output against their own gold;
* profile swap: for each (query, user A), is the output made with A's persona closer to A's gold
  (ROUGE-1 F1) than the output made with another, seeded, user B's persona? Sign test p-value.

Greedy decoding makes a prompt's answer a function of the prompt, so identical prompts are
answered once (the non-personalized prompts of a query are identical for all users: the count of
generations run shows it).

    .venv/bin/python bench/personalization_degree.py --limit 20     # about 10 minutes, 2 cores
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

from rich.console import Console
from rich.progress import track
from rich.table import Table

from p13n.data import User
from p13n.datasets import Sourced
from p13n.datasets.dsp import DOMAINS, DspQuery, load_dsp, persona_description
from p13n.evaluate.degree import SwapResult, egises, jsd_distance, profile_swap, rouge1_distance
from p13n.ingest import ingest
from p13n.llm import LLM, ChatMessage, Completion, GenerationOptions, Tokenizer, get_llm
from p13n.personalize import Personalizer, PersonalizerConfig
from p13n.store import open_store

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dsp-domain-preference"


class GreedyMemo:
    """An LLM that answers a prompt it has already answered greedily from memory."""

    supports_streaming: ClassVar[bool] = False

    def __init__(self, inner: LLM) -> None:
        self.inner = inner
        self.memo: dict[str, Completion] = {}
        self.requested = 0

    @property
    def backend(self) -> str:
        return self.inner.backend

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def context_window(self) -> int:
        return self.inner.context_window

    @property
    def tokenizer(self) -> Tokenizer:
        return self.inner.tokenizer

    def generate(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> Completion:
        self.requested += 1
        if options.temperature > 0:
            return self.inner.generate(messages, options)
        key = hashlib.sha256(
            json.dumps([list(messages), options.model_dump(mode="json")]).encode()
        ).hexdigest()
        if key not in self.memo:
            self.memo[key] = self.inner.generate(messages, options)
        return self.memo[key]

    def stream(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> Iterator[str]:
        yield self.generate(messages, options).text


def rouge1(prediction: str, gold: str) -> float:
    return 1.0 - rouge1_distance(prediction, gold)


def swap_scores(
    queries: Sequence[DspQuery], outputs: dict[str, list[list[str]]], seed: int
) -> dict[str, tuple[list[float], list[float]]]:
    """(own, swapped) ROUGE-1 against A's gold, per configuration; B is seeded per (query, A)."""
    rng = random.Random(seed)
    partners = [
        [rng.choice([k for k in range(len(DOMAINS)) if k != a]) for a in range(len(DOMAINS))]
        for _ in queries
    ]
    scores: dict[str, tuple[list[float], list[float]]] = {}
    for name, answers in outputs.items():
        own, swapped = [], []
        for i, query in enumerate(queries):
            for a, domain in enumerate(DOMAINS):
                gold = query.answers[domain]
                own.append(rouge1(answers[i][a], gold))
                swapped.append(rouge1(answers[i][partners[i][a]], gold))
        scores[name] = (own, swapped)
    return scores


def _swap_cell(result: SwapResult) -> str:
    return (
        f"{result.wins}/{result.ties}/{result.losses}  p={result.p_value:.3g}" if result.n else "-"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--out", type=Path, default=Path("bench/out/personalization_degree.json"))
    args = parser.parse_args()

    console = Console(width=max(Console().width, 110))
    command = shlex.join([Path(sys.executable).name, *sys.argv])
    console.print(f"$ {command}")
    started = time.perf_counter()
    all_queries = load_dsp(args.data)
    queries = random.Random(args.seed).sample(all_queries, min(args.limit, len(all_queries)))
    llm = GreedyMemo(get_llm())
    generation = GenerationOptions(max_new_tokens=args.max_new_tokens)
    users = {domain: f"user-{domain}" for domain in DOMAINS}
    outputs: dict[str, list[list[str]]] = {"persona": [], "none": []}
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(f"sqlite:///{folder}/dsp.db")
        ingest(store, [Sourced(User(id=u), "dsp") for u in users.values()], encoder=None)
        personas = {
            domain: Personalizer(
                store,
                PersonalizerConfig(
                    prompt="persona",
                    persona_description=persona_description(domain),
                    generation=generation,
                ),
                llm=llm,
            )
            for domain in DOMAINS
        }
        baseline = Personalizer(
            store, PersonalizerConfig(prompt="none", generation=generation), llm=llm
        )
        for query in track(queries, description="generating", console=console):
            outputs["persona"].append(
                [personas[d].generate(users[d], query.query).text for d in DOMAINS]
            )
            outputs["none"].append([baseline.generate(users[d], query.query).text for d in DOMAINS])
        store.close()
    generated = time.perf_counter()

    golds = [[q.answers[d] for d in DOMAINS] for q in queries]
    degree = {
        name: {
            "rouge1": egises(answers, golds, distance=rouge1_distance),
            "jsd": egises(answers, golds, distance=jsd_distance),
        }
        for name, answers in outputs.items()
    }
    scores = swap_scores(queries, outputs, args.seed)
    swaps = {name: profile_swap(own, swapped) for name, (own, swapped) in scores.items()}
    persona_vs_none = profile_swap(scores["persona"][0], scores["none"][0])
    gold_degree = egises(golds, golds).degree  # 1 by construction: the scale's top

    table = Table(
        title=f"Personalization degree on DSP: {len(queries)} queries x {len(DOMAINS)} personas, "
        f"{llm.model}, greedy, {args.max_new_tokens} new tokens",
        title_justify="left",
    )
    for column in (
        "prompt",
        "degree, 1-ROUGE-1",
        "degree, JSD",
        "ROUGE-1 own gold",
        "own vs swapped: W/T/L, p",
    ):
        table.add_column(column, justify="left" if column == "configuration" else "right")
    for name in outputs:
        table.add_row(
            name,
            f"{degree[name]['rouge1'].degree:.4f}",
            f"{degree[name]['jsd'].degree:.4f}",
            f"{statistics.fmean(scores[name][0]):.4f}",
            _swap_cell(swaps[name]),
        )
    console.print(table)
    console.print(
        f"persona vs non-personalized, ROUGE-1 vs own gold (win/tie/loss): "
        f"{_swap_cell(persona_vs_none)}, mean gain {persona_vs_none.mean_gain:+.4f}"
    )
    finished = time.perf_counter()
    console.print(
        f"{finished - started:.0f} s in all; {len(llm.memo)} generations run for "
        f"{llm.requested} requested (identical greedy prompts answered once)"
    )

    result: dict[str, Any] = {
        "command": command,
        "seconds": round(finished - started, 1),
        "generation_seconds": round(generated - started, 1),
        "generations_run": len(llm.memo),
        "generations_requested": llm.requested,
        "llm": {"backend": llm.backend, "model": llm.model},
        "config": {"limit": args.limit, "seed": args.seed, "max_new_tokens": args.max_new_tokens},
        "gold_degree": gold_degree,
        "degree": {
            name: {distance: asdict(r) for distance, r in by.items()} for name, by in degree.items()
        },
        "rouge1_own_gold": {name: statistics.fmean(own) for name, (own, _) in scores.items()},
        "profile_swap": {name: asdict(r) for name, r in swaps.items()},
        "persona_vs_none": asdict(persona_vs_none),
        "queries": [
            {
                "id": q.id,
                "query": q.query,
                "outputs": {
                    name: dict(zip(DOMAINS, outputs[name][i], strict=True)) for name in outputs
                },
            }
            for i, q in enumerate(queries)
        ],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
