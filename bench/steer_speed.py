"""What decoding by the learned user costs, side by side in this one process on the same
prompts (torch float32, greedy, a fixed number of new tokens): the base model, the user's LoRA
adapter, CoPe (the adapter against the base model: two forward passes per token) and the user's
steering vector (a hook on one layer), with the time each user's adapter and vector took to
train and their size.

The user is a demo user; the prompts are the headline task's inputs (HuffPost descriptions from
../shared/data). Each figure is the median over the prompts; ratios are against the base model.

    OMP_NUM_THREADS=2 .venv/bin/python bench/steer_speed.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from importlib import resources
from pathlib import Path

from rich.console import Console
from rich.table import Table

from p13n.adapt import LoraTrainer, base_model
from p13n.adapt.runtime import AdaptedLLM
from p13n.adapt.train import train_user_lora, train_user_steering_vector
from p13n.datasets import load_jsonl
from p13n.ingest import ingest
from p13n.llm import ChatMessage, GenerationOptions
from p13n.llm.base import Completion
from p13n.store import open_store

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HUFFPOST = DATA / "huffpost-news-category-v3-head" / "News_Category_Dataset_v3_first10000.json"


def prompts(count: int) -> list[list[ChatMessage]]:
    rows = [json.loads(line) for line in HUFFPOST.read_text().splitlines()[:count]]
    ask = "Generate a headline for the following article: "
    return [[{"role": "user", "content": ask + row["short_description"]}] for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--user", default="ada")
    args = parser.parse_args()
    console = Console(width=160)
    folder = Path(tempfile.mkdtemp(prefix="p13n-steer-speed-"))
    store = open_store(f"sqlite:///{folder}/demo.db")
    with resources.as_file(resources.files("p13n.demo") / "demo.jsonl") as path:
        ingest(store, load_jsonl(path), encoder=None)
    base = base_model()
    adapted = AdaptedLLM(base)
    started = time.perf_counter()
    lora = train_user_lora(store, args.user, "chat", LoraTrainer(base))
    lora_seconds = time.perf_counter() - started
    started = time.perf_counter()
    vector = train_user_steering_vector(store, args.user, "chat", adapted, base)
    vector_seconds = time.perf_counter() - started
    fixed = GenerationOptions(max_new_tokens=args.tokens)
    arms: list[tuple[str, object, GenerationOptions]] = [
        ("base model", None, fixed),
        ("lora", lora, fixed),
        ("cope β=1", lora, fixed.model_copy(update={"adapter_contrast": 1.0})),
        ("style-vector α=0.5", vector, fixed.model_copy(update={"vector_strength": 0.5})),
    ]
    speeds: dict[str, list[float]] = {}
    for name, entry, options in arms:
        adapted.deactivate()
        if entry is not None:
            adapted.activate(store, entry)  # type: ignore[arg-type]
        adapted.generate(prompts(1)[0], options)  # warm
        for messages in prompts(args.prompts):
            started = time.perf_counter()
            done: Completion = adapted.generate(messages, options)
            speeds.setdefault(name, []).append(
                done.completion_tokens / (time.perf_counter() - started)
            )
    table = Table(
        title=f"decoding {args.tokens} new tokens after headline prompts, torch float32, "
        f"median of {args.prompts}",
        title_justify="left",
    )
    for column in ("arm", "passes per token", "tokens/s", "ratio to the base model"):
        table.add_column(column, justify="left" if column == "arm" else "right")
    reference = statistics.median(speeds["base model"])
    for name, _, options in arms:
        median = statistics.median(speeds[name])
        passes = 2 if options.adapter_contrast > 0 else 1
        table.add_row(name, str(passes), f"{median:.1f}", f"{median / reference:.2f}")
    console.print(table)
    cost = Table(title=f"training for user {args.user!r}", title_justify="left")
    for column in ("what", "seconds", "examples", "bytes stored"):
        cost.add_column(column, justify="left" if column == "what" else "right")
    cost.add_row("LoRA adapter (also CoPe's)", f"{lora_seconds:.1f}", str(lora.data_size),
                 f"{lora.size_bytes:,}")  # fmt: skip
    cost.add_row("steering vector", f"{vector_seconds:.1f}", str(vector.data_size),
                 f"{vector.size_bytes:,}")  # fmt: skip
    console.print(cost)
    store.close()


if __name__ == "__main__":
    main()
