"""Per-persona DPO on the DSP data: does each domain persona's adapter prefer its own persona's
answers on held-out queries, more often than the base model and than the other personas' adapters?

DSP (Cheng et al. 2023) answers every Alpaca instruction four times, once per domain persona
(academy, business, entertainment, literature). Queries are split with the seed into training and
held-out sets. For each persona D, a LoRA adapter is trained by DPO (TRL) on the training queries
with D's answer chosen and another domain's answer rejected, and registered in a store as the
persona's adapter. On held-out queries, every pair (D's answer vs each other answer, the original
Alpaca answer included) is scored by

- the base model's likelihood preference: log π_ref(chosen) > log π_ref(rejected);
- each adapter's implicit DPO reward: (log π - log π_ref)(chosen) > (log π - log π_ref)(rejected).

    OMP_NUM_THREADS=2 .venv/bin/python bench/dpo_personas.py            # 32 + 40 queries
    OMP_NUM_THREADS=2 .venv/bin/python bench/dpo_personas.py --train-queries 8 --eval-queries 8
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

from p13n.adapt import DpoSettings, base_model, train_dpo
from p13n.adapt.adapters import register
from p13n.adapt.dpo import Pair, PairScorer, likelihood_accuracy, reward_accuracy
from p13n.data import Persona
from p13n.datasets import Sourced
from p13n.datasets.dsp import ALPACA, DOMAINS, DspQuery, load_dsp, persona_description
from p13n.datasets.dsp import preference_pairs as dsp_pairs
from p13n.evaluate.stats import paired_decomposable
from p13n.ingest import ingest
from p13n.store import open_store

HERE = Path(__file__).resolve().parent
console = Console()


def held_out_pairs(queries: list[DspQuery], persona: str) -> list[tuple[int, str, str]]:
    """(query index, chosen domain, rejected answer key) for persona's held-out pairs."""
    pairs = []
    for n, query in enumerate(queries):
        chosen = query.answers[persona].strip()
        for other in (*DOMAINS, ALPACA):
            answer = query.answers.get(other)
            if other != persona and answer and answer.strip() != chosen:
                pairs.append((n, persona, other))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=HERE.parents[1] / "shared/data/dsp-domain-preference"
    )
    parser.add_argument("--train-queries", type=int, default=32)
    parser.add_argument("--eval-queries", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=192)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "out/dpo_personas")
    args = parser.parse_args()

    queries = load_dsp(args.data)
    order = list(range(len(queries)))
    random.Random(args.seed).shuffle(order)
    train = [queries[i] for i in order[: args.train_queries]]
    held = [queries[i] for i in order[args.train_queries : args.train_queries + args.eval_queries]]
    settings = DpoSettings(
        epochs=args.epochs, max_length=args.max_length, learning_rate=args.learning_rate,
        seed=args.seed,
    )  # fmt: skip
    base = base_model()
    args.out.mkdir(parents=True, exist_ok=True)
    store_path = args.out / "personas.db"
    store_path.unlink(missing_ok=True)
    store = open_store(f"sqlite:///{store_path}")
    ingest(
        store,
        [Sourced(Persona(id=d, description=persona_description(d)), "dsp") for d in DOMAINS],
        encoder=None,
    )

    training: dict[str, dict[str, Any]] = {}
    weights: dict[str, bytes] = {}
    all_pairs = dsp_pairs(train, args.seed)
    for domain in DOMAINS:
        pairs = [
            Pair(p.id, p.prompt, p.chosen, p.rejected) for p in all_pairs if p.persona == domain
        ]
        console.print(f"DPO for persona {domain}: {len(pairs)} pairs ...", highlight=False)
        trained = train_dpo(base, pairs, settings)
        entry = register(
            store,
            trained,
            kind="persona",
            owner=domain,
            task="chat",
            method="dpo",
            base=base,
            data_version=f"dsp:{len(train)}:{args.seed}",
            settings=settings,
        )
        weights[domain] = trained.weights
        training[domain] = {
            **trained.metrics,
            "pairs": len(pairs),
            "size_bytes": entry.size_bytes,
        }
        console.print(f"  {trained.metrics}", highlight=False)

    scorer = PairScorer(base, settings.lora(), max_length=args.max_length)
    items = sorted({(n, key) for n, q in enumerate(held) for key in q.answers if q.answers[key]})
    texts = [(held[n].query, held[n].answers[key]) for n, key in items]
    index = {item: i for i, item in enumerate(items)}
    started = time.perf_counter()
    logp: dict[str, np.ndarray[Any, Any]] = {}
    for model in track(["base", *DOMAINS], description="scoring held-out answers"):
        logp[model] = scorer.logprobs(texts, None if model == "base" else weights[model])
    scoring_seconds = time.perf_counter() - started

    results: dict[str, Any] = {
        "personas": {},
        "config": vars(args) | {"settings": settings.model_dump()},
    }
    results["config"]["data"] = str(args.data)
    results["config"]["out"] = str(args.out)
    matrix = np.zeros((len(DOMAINS), len(DOMAINS)))
    for p_row, persona in enumerate(DOMAINS):
        held_pairs = held_out_pairs(held, persona)
        chosen = np.array([index[(n, c)] for n, c, _ in held_pairs])
        rejected = np.array([index[(n, r)] for n, _, r in held_pairs])
        ref_c, ref_r = logp["base"][chosen], logp["base"][rejected]
        base_acc = likelihood_accuracy(ref_c, ref_r)
        per_adapter = {}
        for a_col, adapter in enumerate(DOMAINS):
            pol_c, pol_r = logp[adapter][chosen], logp[adapter][rejected]
            per_adapter[adapter] = reward_accuracy(pol_c, pol_r, ref_c, ref_r)
            matrix[p_row, a_col] = per_adapter[adapter].mean()
        own = per_adapter[persona]
        others = np.mean([per_adapter[a] for a in DOMAINS if a != persona], axis=0)
        own_likelihood = likelihood_accuracy(logp[persona][chosen], logp[persona][rejected])
        versus_base = paired_decomposable(
            own.tolist(), base_acc.tolist(), higher_is_better=True, resamples=2000, seed=0
        )
        versus_others = paired_decomposable(
            own.tolist(), others.tolist(), higher_is_better=True, resamples=2000, seed=0
        )
        results["personas"][persona] = {
            "pairs": len(held_pairs),
            "base_likelihood_accuracy": float(base_acc.mean()),
            "own_adapter_reward_accuracy": float(own.mean()),
            "own_adapter_likelihood_accuracy": float(own_likelihood.mean()),
            "other_adapters_reward_accuracy": float(others.mean()),
            "reward_accuracy_by_adapter": {a: float(v.mean()) for a, v in per_adapter.items()},
            "own_minus_base": versus_base.__dict__,
            "own_minus_others": versus_others.__dict__,
        }
    results["training"] = training
    results["scoring_seconds"] = round(scoring_seconds, 1)

    table = Table(title=f"DSP held-out preference accuracy ({len(held)} queries)")
    for column in (
        "persona",
        "pairs",
        "base (likelihood)",
        "own adapter (reward)",
        "own - base [95% CI] p",
        "other adapters",
        "own - others p",
        "own (likelihood)",
    ):
        table.add_column(column)  # fmt: skip
    lines = [
        "| persona | pairs | base (likelihood) | own adapter (implicit reward) "
        "| own - base [95% CI], p | other adapters (implicit reward) | own - others, p "
        "| own adapter (likelihood) |",
        "|:--|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for persona, r in results["personas"].items():
        vb, vo = r["own_minus_base"], r["own_minus_others"]
        cells = [
            persona,
            str(r["pairs"]),
            f"{r['base_likelihood_accuracy']:.3f}",
            f"{r['own_adapter_reward_accuracy']:.3f}",
            f"{vb['difference']:+.3f} [{vb['low']:+.3f}, {vb['high']:+.3f}], p={vb['p_value']:.4f}",
            f"{r['other_adapters_reward_accuracy']:.3f}",
            f"{vo['difference']:+.3f}, p={vo['p_value']:.4f}",
            f"{r['own_adapter_likelihood_accuracy']:.3f}",
        ]
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
    console.print(table)
    lines += ["", "Reward accuracy of each adapter (columns) on each persona's pairs (rows):", ""]
    lines.append("| pairs of \\ adapter | " + " | ".join(DOMAINS) + " |")
    lines.append("|:--|" + "--:|" * len(DOMAINS))
    for p_row, persona in enumerate(DOMAINS):
        lines.append(f"| {persona} | " + " | ".join(f"{v:.3f}" for v in matrix[p_row]) + " |")
    seconds = [t["train_seconds"] for t in training.values()]
    lines += [
        "",
        f"Training: {len(train)} queries, one pair per query and persona, {settings.epochs} epoch, "
        f"batch {settings.batch_size}, max length {settings.max_length}: "
        f"{np.mean(seconds):.0f} s per persona adapter (mean), "
        f"{np.mean([t['size_bytes'] for t in training.values()]) / 1e6:.2f} MB each; "
        f"scoring {len(items)} held-out answers under 5 models: {scoring_seconds:.0f} s.",
    ]
    (args.out / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (args.out / "results.json").write_text(
        json.dumps(results, indent=2, default=str), encoding="utf-8"
    )
    _plot(matrix, args.out / "dpo_personas.png")
    console.print("\n".join(lines[-len(DOMAINS) - 6 :]), highlight=False)
    console.print(f"wrote {args.out}/summary.md, results.json, dpo_personas.png")


def _plot(matrix: np.ndarray[Any, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5.2, 4.2))
    image = axis.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
    axis.set_xticks(range(len(DOMAINS)), DOMAINS, rotation=30)
    axis.set_yticks(range(len(DOMAINS)), DOMAINS)
    axis.set_xlabel("DPO adapter")
    axis.set_ylabel("held-out pairs of persona")
    for (row, column), value in np.ndenumerate(matrix):
        axis.text(column, row, f"{value:.2f}", ha="center", va="center", color="white")
    figure.colorbar(image, label="implicit-reward preference accuracy")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    main()
