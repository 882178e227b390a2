"""What decoding in a child process costs and buys: ONNX Runtime GenAI driven in this process
(its Python binding, step by step) against p13n's ``onnx`` backend (the runtime in a child
process, a pipe round trip per token), same conversion, same prompt, greedy, side by side.

- tokens/s of each, alone;
- how fast a pure-Python thread of this process counts while each decodes, against its speed
  with nothing decoding: the binding holds the GIL while it computes a token, so in-process
  decoding starves every other thread of the interpreter (the service's writes and reads).

Once with the runtime on 1 thread (a core left for the Python thread: what is lost there is
the GIL) and once on the usable cores (the Python thread also competes for the CPU).

    .venv/bin/python bench/onnx_process.py
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from p13n.llm import ChatMessage, GenerationOptions, LLMConfig, get_llm
from p13n.llm.onnx import OnnxLLM
from p13n.llm.onnx_worker import genai_runtime, runtime_threads

PROMPT: list[ChatMessage] = [
    {"role": "user", "content": "Write a long story about a lighthouse keeper and a storm."}
]


def in_process(llm: OnnxLLM, tokens: int) -> Callable[[], int]:
    """The runtime loaded here and driven as its own examples do."""
    og = genai_runtime()
    settings = og.Config(str(llm.folder))
    options = {"intra_op_num_threads": runtime_threads()}
    settings.overlay(json.dumps({"model": {"decoder": {"session_options": options}}}))
    model = og.Model(settings)
    text = llm.tokenizer.render(PROMPT)
    prompt = np.asarray(llm.tokenizer.hf(text, add_special_tokens=False)["input_ids"])

    def decode() -> int:
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=len(prompt) + tokens)
        generator = og.Generator(model, params)
        generator.append_tokens(prompt.astype(np.int32))
        produced = 0
        while not generator.is_done():
            generator.generate_next_token()
            produced += 1
        return produced

    return decode


def through_backend(llm: OnnxLLM, tokens: int) -> Callable[[], int]:
    options = GenerationOptions(max_new_tokens=tokens)
    # no end token stops it early: the story prompt runs to max_new_tokens
    return lambda: llm.generate(PROMPT, options).completion_tokens


def counting_rate(seconds: float, busy: Callable[[], int] | None) -> tuple[float, float]:
    """(loop iterations/s of a pure-Python thread, tokens/s decoded meanwhile)."""
    stop = threading.Event()
    counted = [0]

    def count() -> None:
        while not stop.is_set():
            counted[0] += 1

    thread = threading.Thread(target=count)
    started = time.perf_counter()
    thread.start()
    produced = 0
    if busy is None:
        time.sleep(seconds)
    else:
        while time.perf_counter() - started < seconds:
            produced += busy()
    stop.set()
    thread.join()
    elapsed = time.perf_counter() - started
    return counted[0] / elapsed, produced / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--out", type=Path, default=Path("bench/out/onnx_process.json"))
    args = parser.parse_args()

    cores = len(os.sched_getaffinity(0))
    table = Table(title=f"onnx int4, {args.tokens} new tokens")
    for column in ("runtime threads", "decoding", "tokens/s alone"):
        table.add_column(column, justify="right")
    table.add_column("tokens/s beside a Python thread", justify="right")
    table.add_column("Python thread's speed (of idle)", justify="right")
    results: dict[str, Any] = {"tokens": args.tokens, "runs": []}
    for threads in sorted({1, cores}):
        os.environ["OMP_NUM_THREADS"] = str(threads)  # read by both ways below
        llm = get_llm(LLMConfig(backend="onnx"))
        assert isinstance(llm, OnnxLLM) and llm.runtime.threads == threads
        ways = {
            "in this process": in_process(llm, args.tokens),
            "child process (p13n)": through_backend(llm, args.tokens),
        }
        for decode in ways.values():
            decode()  # warm
        alone = {}
        for name, decode in ways.items():
            started = time.perf_counter()
            produced = sum(decode() for _ in range(3))
            alone[name] = produced / (time.perf_counter() - started)
        idle, _ = counting_rate(args.seconds, None)
        for name, decode in ways.items():
            rate, beside = counting_rate(args.seconds, decode)
            table.add_row(str(threads), name, f"{alone[name]:.1f}", f"{beside:.1f}",
                          f"{rate / idle:.0%}")  # fmt: skip
            results["runs"].append(
                {
                    "threads": threads,
                    "decoding": name,
                    "tokens_per_s_alone": alone[name],
                    "tokens_per_s_beside_thread": beside,
                    "python_thread_share_of_idle": rate / idle,
                }
            )
    Console().print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
