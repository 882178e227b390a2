"""What a per-user LoRA adapter costs: training time for one user with 100 documents on 2 CPU
threads, the adapter's size on disk, and the latency of swapping adapters at generation time,
each against its floor (issue #8: under 3 minutes, under 5 MB, under 100 ms).

The user is the headline task's (HuffPost, LaMP-4 style) test user with the most history (100
articles with their headlines), trained with the default ``LoraSettings`` (rank 8 on q/k/v/o,
2 epochs). Swaps are measured two ways: between adapters already in memory (the LRU cache),
and cold (read from the store, deserialized and copied into the slot).

    OMP_NUM_THREADS=2 .venv/bin/python bench/adapter_cost.py
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from p13n.adapt import LoraSettings, LoraTrainer, base_model
from p13n.adapt.runtime import AdaptedLLM
from p13n.adapt.train import train_user_lora
from p13n.benchmarks.stores import profile_records
from p13n.datasets.lamp import read_split
from p13n.datasets.tasks import shipped_tasks, write_task
from p13n.encode import get_encoder
from p13n.ingest import ingest
from p13n.llm import GenerationOptions
from p13n.prompt import NON_PERSONALIZED, templates
from p13n.store import open_store

HERE = Path(__file__).resolve().parent
console = Console()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=Path, default=HERE.parent / "tasks")
    parser.add_argument("--data", type=Path, default=HERE.parents[1] / "shared/data")
    parser.add_argument("--swaps", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(2)

    folder = args.tasks / "headline"
    if not (folder / "recipe.json").exists():
        write_task(shipped_tasks.get("headline"), args.data, folder)
    split = read_split(folder, "test")
    users = sorted(split.examples, key=lambda e: (-len(e.profile), e.id))[:2]
    with tempfile.TemporaryDirectory() as scratch:
        store = open_store(f"sqlite:///{scratch}/adapters.db")
        records, _ = profile_records(split, users)
        ingest(store, records, encoder=get_encoder())
        base = base_model()
        trainer = LoraTrainer(base, LoraSettings())
        started = time.perf_counter()
        entry = train_user_lora(store, users[0].id, "lamp4", trainer)
        train_seconds = time.perf_counter() - started
        other = train_user_lora(
            store, users[1].id, "lamp4", LoraTrainer(base, LoraSettings(max_examples=8, epochs=1))
        )
        weights = store.adapter_weights(entry.adapter_id)
        assert weights is not None
        on_disk = Path(scratch) / "adapter.safetensors"
        on_disk.write_bytes(weights)
        size = on_disk.stat().st_size

        llm = AdaptedLLM(base)
        warm: list[float] = []
        cold: list[float] = []
        for n in range(args.swaps):
            warm.append(llm.activate(store, entry if n % 2 else other))
        for n in range(args.swaps // 4):
            target = entry if n % 2 else other
            llm.unload(target)
            cold.append(llm.activate(store, target))
        prompt = NON_PERSONALIZED.build(
            templates.get("lamp4"), users[0].input, llm.tokenizer, 2048
        ).messages
        options = GenerationOptions(max_new_tokens=24)
        started = time.perf_counter()
        llm.activate(store, entry)
        llm.generate(list(prompt), options)
        adapted_ms = (time.perf_counter() - started) * 1000
        llm.deactivate()
        started = time.perf_counter()
        llm.generate(list(prompt), options)
        base_ms = (time.perf_counter() - started) * 1000
        store.close()

    table = Table(title="per-user LoRA adapter cost (SmolLM2-135M, 2 CPU threads)")
    for column in ("measure", "value", "floor", "value / floor"):
        table.add_column(column)
    rows = [
        (f"training, {entry.data_size} documents x 2 epochs (s)", train_seconds, 180.0),
        ("adapter on disk (MB)", size / 1e6, 5.0),
        ("swap, in memory: median (ms)", statistics.median(warm), 100.0),
        ("swap, in memory: p99 (ms)", percentile(warm, 0.99), 100.0),
        ("swap, cold from the store: median (ms)", statistics.median(cold), 100.0),
        ("swap, cold from the store: p99 (ms)", percentile(cold, 0.99), 100.0),
    ]
    for name, value, floor in rows:
        table.add_row(name, f"{value:.2f}", f"{floor:g}", f"{value / floor:.3f}")
    console.print(table)
    console.print(
        f"training: {entry.metrics['steps']} steps, loss {entry.metrics['loss_first_epoch']} -> "
        f"{entry.metrics['loss_last_epoch']}; one answer (24 new tokens): base {base_ms:.0f} ms, "
        f"with the adapter (swap included) {adapted_ms:.0f} ms",
        highlight=False,
    )


if __name__ == "__main__":
    main()
