"""Per-user LoRA adapters on the fast path: decoding with a user's adapter active on torch float32
(``AdaptedLLM``) and on ONNX Runtime GenAI int4 (``OnnxAdaptedLLM``), side by side in this one
process, same prompt, greedy, each against the same backend without an adapter.

- tokens/s of a 64-token answer after a ~100-token prompt: plain, one user's adapter, and two
  users alternating request by request (each answer swaps the adapter in);
- the swap itself (ms): the first activation of an adapter (read, converted, loaded) and later
  ones (already loaded);
- choice scoring (5 labels) with an adapter active;
- the one-off cost of the LoRA-ready copy of the conversion (built once per model and target set).

The adapters are seeded PEFT LoRA tensors of the default shape (rank 8, q/k/v/o), as training
stores them: their values do not change the cost. Figures are medians of ``--repeats`` runs.

    OMP_NUM_THREADS=2 .venv/bin/python bench/onnx_adapters.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from p13n.adapt import adapters
from p13n.adapt.base import TrainedWeights, base_model, load_torch_model
from p13n.adapt.lora import LoraSettings, serialize
from p13n.adapt.runtime import Adaptable, adapted_llm
from p13n.data import Document
from p13n.datasets import Sourced
from p13n.ingest import ingest
from p13n.llm import ChatMessage, GenerationOptions, LLMConfig
from p13n.llm.embedded import embedded_model_dir
from p13n.store import Store, StoredAdapter, open_store

PROMPT: list[ChatMessage] = [
    {
        "role": "user",
        "content": "I write short, upbeat notes about weekend cooking, cycling and the books I "
        "read. My last notes were about a lentil soup, a 60 km ride along the river and a "
        "crime novel set in Oslo. Write a long, detailed note about my next weekend, in my "
        "own voice, with what I will cook, where I will ride and what I will read.",
    }
]
RATING: list[ChatMessage] = [
    {"role": "user", "content": "Rate this review from 1 to 5: 'Terrible, it broke in a day.'"}
]


def seeded_adapters(store: Store, users: list[str]) -> list[StoredAdapter]:
    """One seeded LoRA adapter of the default shape per user, registered in ``store``."""
    import torch
    from peft import get_peft_model, get_peft_model_state_dict

    records = [Sourced(Document(user_id=user, text="A note."), "bench") for user in users]
    ingest(store, records, encoder=None)
    settings = LoraSettings()
    model = get_peft_model(load_torch_model(embedded_model_dir()), settings.peft_config())
    entries = []
    for seed, user in enumerate(users):
        torch.manual_seed(seed)
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if "lora_" in name:
                    parameter.normal_(0, 0.03)
        state = get_peft_model_state_dict(model)
        trained = TrainedWeights(serialize(state), {"peft": "lora", **settings.model_dump()}, 4, {})
        entries.append(
            adapters.register(
                store,
                trained,
                kind="user",
                owner=user,
                task="chat",
                method="lora",
                base=base_model(),
                data_version="v",
                settings=settings,
            )
        )
    return entries


def tokens_per_second(llm: Adaptable, options: GenerationOptions) -> float:
    started = time.perf_counter()
    completion = llm.generate(PROMPT, options)
    return completion.completion_tokens / (time.perf_counter() - started)


def measure(
    llm: Adaptable, store: Store, entries: list[StoredAdapter], repeats: int
) -> dict[str, float]:
    options = GenerationOptions(max_new_tokens=64)
    figures: dict[str, float] = {}
    llm.generate(PROMPT, GenerationOptions(max_new_tokens=4))  # warm up
    figures["tok/s plain"] = statistics.median(
        tokens_per_second(llm, options) for _ in range(repeats)
    )
    first, second = entries
    figures["first swap ms (builds the LoRA slot or model, loads the adapter)"] = llm.activate(
        store, first
    )
    figures["tok/s one user's adapter"] = statistics.median(
        tokens_per_second(llm, options) for _ in range(repeats)
    )
    figures["first swap ms, second adapter"] = llm.activate(store, second)
    swaps: list[float] = []
    speeds: list[float] = []
    for turn in range(2 * repeats):
        swaps.append(llm.activate(store, entries[turn % 2]))
        speeds.append(tokens_per_second(llm, options))
    figures["tok/s two users alternating"] = statistics.median(speeds)
    figures["swap ms, loaded adapter"] = statistics.median(swaps)
    scorer: Any = llm
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        scorer.score_choices(RATING, ["1", "2", "3", "4", "5"])
        runs.append(time.perf_counter() - started)
    figures["score s, 5 labels, adapter"] = statistics.median(runs)
    llm.deactivate()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/out/onnx_adapters.json"))
    args = parser.parse_args()
    console = Console()
    configs = {
        "torch float32": LLMConfig(backend="embedded"),
        "onnx int4": LLMConfig(backend="onnx", precision="int4"),
    }
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(f"sqlite:///{folder}/bench.db")
        entries = seeded_adapters(store, ["ada", "bruno"])
        for name, config in configs.items():
            results[name] = measure(adapted_llm(config), store, entries, args.repeats)
            console.print(f"{name}: {results[name]}")
        store.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    torch_row = results["torch float32"]
    table = Table(title="LoRA adapters: torch float32 against onnx int4 (median)")
    table.add_column("measure")
    for name in results:
        table.add_column(name, justify="right")
    table.add_column("onnx / torch", justify="right")
    for figure, torch_value in torch_row.items():
        onnx_value = results["onnx int4"][figure]
        table.add_row(
            figure, f"{torch_value:.3g}", f"{onnx_value:.3g}", f"{onnx_value / torch_value:.2f}"
        )
    console.print(table)
    for name, row in results.items():
        overhead = row["tok/s plain"] / row["tok/s one user's adapter"]
        console.print(f"{name}: an active adapter costs {overhead:.2f}x the plain decoding time")
    console.print(f"saved {args.out}")


if __name__ == "__main__":
    main()
