"""What serving LoRA adapters costs in memory: the resident set (RSS) of a process holding a
``Personalizer`` with ``adapter="lora"`` after it answered once with a user's adapter and once
without, measured side by side in fresh processes:

- ``shared`` (now): the adapted model runs on the plain model's weights, one float32 copy;
- ``copy`` (before): the same, plus the second float32 copy of the base model the adapted model
  used to load for itself (``load_torch_model``, with its LoRA slot), used once.

``--before-src DIR`` measures the code in ``DIR`` (e.g. ``git archive 89d8472 src | tar -x -C
DIR``) as ``before`` instead of the ``copy`` emulation.

    .venv/bin/python bench/adapter_memory.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

USER = "ada"
QUESTION = "Suggest a title for my note about the weekend."


def rss_mb() -> dict[str, float]:
    """This process's resident set now and at its peak, in MB (Linux /proc)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in {"VmRSS", "VmHWM"}:
            fields[key] = int(value.split()[0]) / 1024
    return {"rss_mb": round(fields["VmRSS"], 1), "peak_mb": round(fields["VmHWM"], 1)}


def prepare(url: str) -> None:
    """The demo users, and a small LoRA adapter for one of them (trained here, not measured)."""
    from p13n.adapt import LoraSettings, LoraTrainer, base_model
    from p13n.adapt.train import train_user_lora
    from p13n.datasets import load_jsonl
    from p13n.ingest import ingest
    from p13n.store import open_store

    store = open_store(url)
    with resources.as_file(resources.files("p13n.demo") / "demo.jsonl") as path:
        ingest(store, load_jsonl(path), encoder=None)
    settings = LoraSettings(
        epochs=1, batch_size=4, max_examples=4, max_input_tokens=48, max_answer_tokens=16
    )
    train_user_lora(store, USER, "chat", LoraTrainer(base_model(), settings))
    store.close()


def measure(url: str, mode: str) -> dict[str, Any]:
    """In this (fresh) process: a Personalizer with the user's adapter, answering once with it
    and once without; ``copy`` also holds a second base-model copy, as before."""
    from p13n.llm import GenerationOptions
    from p13n.personalize import Personalizer, PersonalizerConfig
    from p13n.store import open_store

    store = open_store(url)
    started = rss_mb()
    config = PersonalizerConfig(
        adapter="lora", prompt="none", generation=GenerationOptions(max_new_tokens=8)
    )
    personalizer = Personalizer(store, config)
    extra: Any = None
    if mode == "copy":
        import torch
        from peft import get_peft_model

        from p13n.adapt.base import load_torch_model
        from p13n.adapt.lora import LoraShape

        assert personalizer.adapted is not None
        extra = get_peft_model(
            load_torch_model(personalizer.adapted.base.path), LoraShape().peft_config()
        ).eval()
        with torch.inference_mode():
            extra(input_ids=torch.tensor([[1, 2, 3]]))
    baseline, personal = personalizer.compare(USER, QUESTION)
    assert personal.trace.adapter is not None and baseline.trace.adapter is None
    return {"mode": mode, "before_load": started, **rss_mb(), "held": extra is not None}


def child(url: str, mode: str, src: Path | None) -> dict[str, Any]:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    result = subprocess.run(
        [sys.executable, __file__, "--measure", mode, "--store", url],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"the {mode} measurement failed:\n{result.stderr[-4000:]}")
    measured: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure", choices=["shared", "copy"], help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--before-src", type=Path, help="measure this source tree as 'before'")
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.store, args.measure)))
        return
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{scratch}/memory.db"
        prepare(url)
        src = os.environ.get("PYTHONPATH")
        before = (
            child(url, "shared", args.before_src.resolve())
            if args.before_src
            else child(url, "copy", Path(src) if src else None)
        )
        after = child(url, "shared", Path(src) if src else None)
    label = f"before ({args.before_src or 'a second base-model copy'})"
    width = max(len(label), 22)
    print(f"{'':{width}} {'RSS MB':>9} {'peak MB':>9}")
    print(f"{label:{width}} {before['rss_mb']:>9.1f} {before['peak_mb']:>9.1f}")
    print(f"{'after (shared weights)':{width}} {after['rss_mb']:>9.1f} {after['peak_mb']:>9.1f}")
    print(
        f"after / before: RSS {after['rss_mb'] / before['rss_mb']:.2f}, "
        f"peak {after['peak_mb'] / before['peak_mb']:.2f}; "
        f"saved {before['rss_mb'] - after['rss_mb']:.0f} MB"
    )


if __name__ == "__main__":
    main()
