"""Helpers for tests: a full dump of what a store holds, to prove a batch left nothing behind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select

from p13n.benchmarks.coldstart_config import ColdStartConfig
from p13n.benchmarks.config import BenchConfig
from p13n.benchmarks.results import BenchResult
from p13n.benchmarks.runner import BenchRunner
from p13n.encode import Encoder
from p13n.llm import LLM, LLMConfig
from p13n.store import SQLStore, Store
from p13n.store import schema as s


def dump(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every p13n table (all tenants), ordered, for before/after comparisons."""
    assert isinstance(store, SQLStore)
    rows: dict[str, list[tuple[Any, ...]]] = {}
    with store.engine.connect() as connection:
        for table in s.metadata.sorted_tables:
            result = connection.execute(select(table).order_by(*table.primary_key.columns))
            rows[table.name] = [
                tuple(v for k, v in row._mapping.items() if k != "ingested_at") for row in result
            ]
    return rows


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


C = TypeVar("C", BenchConfig, ColdStartConfig)


def naming(config: C, llm: LLM) -> C:
    """``config`` naming the session's embedded model as its LLM (benchmarks default to onnx),
    so the runner's Ray workers and learned arms build the model it is given."""
    assert llm.backend == "embedded", llm.backend
    return config.model_copy(update={"llm": LLMConfig(backend="embedded")})


def run_bench(config: BenchConfig, llm: LLM, encoder: Encoder) -> BenchResult:
    """One benchmark run with the session's model and encoder, its cache closed after."""
    runner = BenchRunner(naming(config, llm), llm=llm, encoder=encoder)
    try:
        return runner.run()
    finally:
        runner.close()
