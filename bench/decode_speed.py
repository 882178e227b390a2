"""Decoding speed of the embedded model: torch float32 (``embedded``) against ONNX Runtime GenAI
(``onnx``) at int4, int8 and fp32, side by side in this one process, same prompts, greedy.

- tokens/s and time to first token (streamed), for answers of up to 64 and 256 new tokens after
  a prompt of ~100 and of ~1,500 tokens (real HuffPost articles from ../shared/data);
- choice scoring latency (``score_choices``) with 5 labels and with 29 labels;
- prompts/s for a list of 32 short prompts handed to ``generate_many`` at batch 1, 8 and 32
  (the benchmark runner's call).

Each figure is the median of ``--repeats`` runs. Ratios are against torch float32.

    OMP_NUM_THREADS=2 .venv/bin/python bench/decode_speed.py
    .venv/bin/python bench/decode_speed.py --quick     # 64 tokens, short prompt, int4 only
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from p13n.llm import LLM, ChatMessage, GenerationOptions, LLMConfig, generate_many, get_llm

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HUFFPOST = DATA / "huffpost-news-category-v3-head" / "News_Category_Dataset_v3_first10000.json"
LABELS_29 = [
    "POLITICS", "WELLNESS", "ENTERTAINMENT", "TRAVEL", "STYLE & BEAUTY", "PARENTING",
    "HEALTHY LIVING", "QUEER VOICES", "FOOD & DRINK", "BUSINESS", "COMEDY", "SPORTS",
    "BLACK VOICES", "HOME & LIVING", "PARENTS", "THE WORLDPOST", "WEDDINGS", "WOMEN", "CRIME",
    "IMPACT", "DIVORCE", "WORLD NEWS", "MEDIA", "WEIRD NEWS", "GREEN", "WORLDPOST",
    "RELIGION", "STYLE", "SCIENCE",
]  # fmt: skip


def articles() -> list[dict[str, Any]]:
    return [json.loads(line) for line in HUFFPOST.read_text().splitlines()[:400]]


def prompt_of(llm: LLM, tokens: int, rows: list[dict[str, Any]]) -> list[ChatMessage]:
    """A request to continue a story, preceded by article summaries up to ~``tokens`` tokens."""
    ask = "Write a long, detailed news story that continues from these notes."
    notes: list[str] = []
    for row in rows:
        candidate = "\n".join([*notes, f"- {row['headline']}: {row['short_description']}"])
        if (
            llm.tokenizer.count_chat([{"role": "user", "content": f"{candidate}\n\n{ask}"}])
            > tokens
        ):
            break
        notes.append(f"- {row['headline']}: {row['short_description']}")
    return [{"role": "user", "content": "\n".join(notes) + f"\n\n{ask}"}]


def decode(llm: LLM, messages: list[ChatMessage], new_tokens: int) -> tuple[float, float]:
    """(tokens/s, seconds to the first streamed piece) of one greedy streamed answer."""
    options = GenerationOptions(max_new_tokens=new_tokens)
    started = time.perf_counter()
    first = None
    text = ""
    for piece in llm.stream(messages, options):
        first = first or time.perf_counter() - started
        text += piece
    elapsed = time.perf_counter() - started
    tokens = llm.tokenizer.count(text)
    return tokens / elapsed, first or elapsed


def measure(
    llm: LLM,
    prompts: dict[str, list[ChatMessage]],
    lengths: list[int],
    rows: list[dict[str, Any]],
    repeats: int,
    console: Console,
    name: str,
) -> dict[str, float]:
    """Every figure of one backend."""
    figures: dict[str, float] = {}
    llm.generate(prompts["~100"], GenerationOptions(max_new_tokens=4))  # warm up
    for label, messages in prompts.items():
        for n in lengths:
            runs = [decode(llm, messages, n) for _ in range(repeats)]
            figures[f"tok/s p{label} n{n}"] = statistics.median(r[0] for r in runs)
            figures[f"ttft s p{label} n{n}"] = statistics.median(r[1] for r in runs)
    scorer: Any = llm
    for choices in (["1", "2", "3", "4", "5"], LABELS_29):
        figures[f"score s {len(choices)} labels"] = statistics.median(
            _timed(partial(scorer.score_choices, prompts["~100"], choices)) for _ in range(repeats)
        )
    short: list[list[ChatMessage]] = [
        [{"role": "user", "content": f"Write a headline for: {r['short_description']}"}]
        for r in rows[:32]
    ]
    options = GenerationOptions(max_new_tokens=16)
    for batch in (1, 8, 32):
        seconds = _timed(partial(generate_many, llm, short, options, batch_size=batch))
        figures[f"prompts/s batch {batch}"] = len(short) / seconds
    console.print(f"{name}: {figures}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("bench/out/decode_speed.json"))
    args = parser.parse_args()
    console = Console()
    configs = {"torch float32": LLMConfig(backend="embedded")}
    precisions = ["int4"] if args.quick else ["int4", "int8", "fp32"]
    configs |= {f"onnx {p}": LLMConfig(backend="onnx", precision=p) for p in precisions}
    llms = {name: get_llm(config) for name, config in configs.items()}
    reference = next(iter(llms.values()))
    rows = articles()
    prompts = {"~100": prompt_of(reference, 100, rows)}
    lengths = [64] if args.quick else [64, 256]
    if not args.quick:
        prompts["~1,500"] = prompt_of(reference, 1500, rows)
    results: dict[str, dict[str, float]] = {name: {} for name in llms}

    for name, llm in llms.items():
        results[name] = measure(llm, prompts, lengths, rows, args.repeats, console, name)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    torch_row = results["torch float32"]
    table = Table(title="Decoding speed (median; x: ratio to torch float32)")
    table.add_column("measure")
    for name in llms:
        table.add_column(name, justify="right")
    for figure in torch_row:
        cells = []
        for name in llms:
            value = results[name][figure]
            ratio = value / torch_row[figure]
            if figure.startswith(("ttft", "score")):
                ratio = 1 / ratio  # lower is better: show the speed-up
            cells.append(f"{value:.3g}" + ("" if name == "torch float32" else f" ({ratio:.1f}x)"))
        table.add_row(figure, *cells)
    console.print(table)
    console.print(f"saved {args.out}")


def _timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
