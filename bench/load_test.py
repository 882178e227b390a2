"""A bounded load test of the service on loopback (issue #9): many clients writing, reading and
generating at once against ``p13n serve`` in its own process.

The server runs on a fresh store (SQLite file by default, ``--store postgresql://...`` for
PostgreSQL) with embedding on, one generation slot and a queue of 64. A tenant is created through
the admin API with a rate limit the clients cannot reach, and ``--users`` real Amazon reviewers
(../shared/data) are seeded through ``POST /v1/ingest``. Then, for ``--duration`` seconds:

- writer clients loop over: add a document (``POST /v1/users/{id}/documents``), ingest a small
  batch (three documents and a rating, ``POST /v1/ingest``), list a user's documents; they go
  on until the last generation is answered, so every generation is timed under load;
- generator clients loop over ``POST /v1/generate`` (``max_tokens`` 16), waiting as long as the
  queue makes them (timeout 600 s): they queue behind the one model rather than time out.

Every acknowledged write's id is kept; after the run every one of them is looked for through the
API. Printed: per-kind p50/p95/p99 latency, throughput, status counts, the generation queue wait
(latency minus the server's own trace time) and the server's peak RSS (psutil, sampled every
100 ms, children included). Exits 1 on a lost write, any error status (4xx or 5xx), or a
transport error.

    .venv/bin/python bench/load_test.py
    .venv/bin/python bench/load_test.py --clients 50 --generators 10 --duration 60
    .venv/bin/python bench/load_test.py --llm embedded,onnx     # torch, then onnx int4 (default)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from rich.console import Console
from rich.table import Table

from p13n.data import Document, Interaction
from p13n.datasets import load_amazon
from p13n.server.process import ServerProcess, serve_in_subprocess
from p13n.server.state import DEV_ADMIN_KEY

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REVIEWS = DATA / "amazon-reviews-2018-small-5core" / "Gift_Cards_5.json.gz"
OUT = Path(__file__).resolve().parent / "out" / "load_test.json"
TENANT = "load"
PHRASES = [
    "The card arrived quickly and the design was lovely.",
    "My sister used it the same day, no problems at all.",
    "Good value, though the envelope was a little plain.",
    "Easy to send by email; the recipient was delighted.",
    "It worked at checkout without any fuss.",
]
"""Writers' documents are made of these with a unique id, so each one is new to the store."""
PROMPT = "Write a short review of a gift card you bought."

console = Console()


# ------------------------------------------------------------------------------- setting up
def seed_records(users: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Documents and ratings of the first ``users`` reviewers with at least 5 reviews."""
    by_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for sourced in load_amazon(REVIEWS):
        record = sourced.record
        kind = "document" if isinstance(record, Document) else "interaction"
        if isinstance(record, Document | Interaction):
            by_user[record.user_id].append(
                {"type": kind, **record.model_dump(mode="json", exclude_none=True)}
            )
    chosen = [u for u, rs in by_user.items() if sum(r["type"] == "document" for r in rs) >= 5]
    chosen = chosen[:users]
    if len(chosen) < users:
        raise SystemExit(f"{REVIEWS} has only {len(chosen)} reviewers with 5 reviews")
    return [r for u in chosen for r in by_user[u]], chosen


def set_up(server: ServerProcess, users: int) -> tuple[str, list[str]]:
    """A tenant with a rate limit nobody reaches, its key, and the seeded users."""
    admin = {"Authorization": f"Bearer {DEV_ADMIN_KEY}"}
    with httpx.Client(base_url=server.url, timeout=300) as http:
        made = http.post(
            "/v1/admin/tenants",
            json={"name": TENANT, "settings": {"rate_limit_per_minute": 100_000_000}},
            headers=admin,
        )
        made.raise_for_status()
        key: str = http.post(
            f"/v1/admin/tenants/{TENANT}/keys", json={"label": "load"}, headers=admin
        ).json()["key"]
        records, chosen = seed_records(users)
        auth = {"Authorization": f"Bearer {key}"}
        for start in range(0, len(records), 200):
            http.post(
                "/v1/ingest", json={"records": records[start : start + 200]}, headers=auth
            ).raise_for_status()
    return key, chosen


# ------------------------------------------------------------------------------- the clients
@dataclass
class Results:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    generating: int = 0
    """Generator clients still running."""
    transport_errors: list[str] = field(default_factory=list)
    error_responses: list[str] = field(default_factory=list)
    """Any 4xx or 5xx: none is expected (the rate limit and the queue are out of reach)."""
    acked_documents: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    acked_interactions: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    queue_wait_ms: list[float] = field(default_factory=list)
    served_ms: list[float] = field(default_factory=list)
    """The trace's total: retrieval, prompt and the model, without the queue."""
    decode_ms: list[float] = field(default_factory=list)
    """The trace's model time alone."""

    def record(self, kind: str, started: float, response: httpx.Response) -> None:
        self.latencies[kind].append((time.perf_counter() - started) * 1000)
        self.statuses[kind][response.status_code] += 1


async def call(
    http: httpx.AsyncClient, results: Results, kind: str, method: str, url: str, **kw: Any
) -> httpx.Response | None:
    started = time.perf_counter()
    try:
        response = await http.request(method, url, **kw)
    except httpx.HTTPError as error:
        results.transport_errors.append(f"{kind}: {type(error).__name__}: {error}")
        return None
    results.record(kind, started, response)
    if response.status_code >= 400:
        results.error_responses.append(f"{kind}: {response.status_code} {response.text[:300]}")
    return response


async def writer(
    number: int, http: httpx.AsyncClient, users: list[str], deadline: float, results: Results
) -> None:
    rng = random.Random(number)
    n = 0
    # Writers go on while a generation of the test is still running, so every generation is
    # measured under the write load.
    while time.monotonic() < deadline or results.generating:
        n += 1
        user = rng.choice(users)
        roll = rng.random()
        if roll < 0.55:
            doc = f"w{number}-{n}"
            body = {"id": doc, "text": f"{rng.choice(PHRASES)} ({doc})", "kind": "review"}
            response = await call(
                http, results, "add document", "POST", f"/v1/users/{user}/documents", json=body
            )
            if response is not None and response.status_code == 201:
                results.acked_documents[user].add(doc)
        elif roll < 0.80:
            docs = [f"w{number}-{n}-{i}" for i in range(3)]
            rating = f"w{number}-{n}-r"
            records: list[dict[str, Any]] = [
                {"type": "document", "user_id": user, "id": d, "text": rng.choice(PHRASES)}
                for d in docs
            ]
            records.append(
                {
                    "type": "interaction",
                    "user_id": user,
                    "id": rating,
                    "item_id": f"item-{rng.randrange(50)}",
                    "kind": "rating",
                    "value": float(rng.randint(1, 5)),
                }
            )
            response = await call(
                http, results, "ingest batch", "POST", "/v1/ingest", json={"records": records}
            )
            if response is not None and response.status_code == 201:
                results.acked_documents[user].update(docs)
                results.acked_interactions[user].add(rating)
        else:
            await call(
                http,
                results,
                "list documents",
                "GET",
                f"/v1/users/{user}/documents",
                params={"limit": 10},
            )


async def generator(
    number: int, http: httpx.AsyncClient, users: list[str], deadline: float, results: Results
) -> None:
    rng = random.Random(10_000 + number)
    results.generating += 1
    try:
        while time.monotonic() < deadline:
            body = {"user": rng.choice(users), "input": PROMPT, "max_tokens": 16}
            started = time.perf_counter()
            response = await call(http, results, "generate", "POST", "/v1/generate", json=body)
            if response is not None and response.status_code == 200:
                total = (time.perf_counter() - started) * 1000
                timings = response.json()["trace"]["timings"]
                results.served_ms.append(timings["total_ms"])
                results.decode_ms.append(timings["generate_ms"])
                results.queue_wait_ms.append(total - timings["total_ms"])
    finally:
        results.generating -= 1


def alone(url: str, key: str, users: list[str], times: int = 3) -> list[float]:
    """Served time (trace total, ms) of generations with nothing else running: the reference
    the loaded figures are compared with."""
    served = []
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=300) as http:
        for user in users[:times]:
            body = {"user": user, "input": PROMPT, "max_tokens": 16}
            response = http.post("/v1/generate", json=body)
            response.raise_for_status()
            served.append(response.json()["trace"]["timings"]["total_ms"])
    return served


async def load(
    url: str, key: str, users: list[str], clients: int, generators: int, duration: float
) -> tuple[Results, float]:
    results = Results()
    deadline = time.monotonic() + duration
    limits = httpx.Limits(max_connections=clients + 5, max_keepalive_connections=clients + 5)
    async with httpx.AsyncClient(
        base_url=url,
        headers={"Authorization": f"Bearer {key}"},
        timeout=httpx.Timeout(600, connect=30),
        limits=limits,
    ) as http:
        started = time.perf_counter()
        await asyncio.gather(
            *(writer(n, http, users, deadline, results) for n in range(clients - generators)),
            *(generator(n, http, users, deadline, results) for n in range(generators)),
        )
        elapsed = time.perf_counter() - started
    return results, elapsed


class PeakRSS(threading.Thread):
    """The largest resident set of the server and its children, sampled until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                tree = [self.process, *self.process.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in tree))
            except psutil.NoSuchProcess:
                return
            self.done.wait(0.1)


def lost_writes(url: str, key: str, results: Results) -> list[str]:
    """Acknowledged writes the store does not have, read back through the API."""
    lost: list[str] = []
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
        for kind, acked in (
            ("documents", results.acked_documents),
            ("interactions", results.acked_interactions),
        ):
            for user, ids in acked.items():
                listed = http.get(f"/v1/users/{user}/{kind}", params={"limit": 1000})
                listed.raise_for_status()
                stored = listed.json()[kind]
                if len(stored) == 1000:
                    raise SystemExit(f"{user} has 1000+ {kind}: use more --users")
                missing = ids - {r["id"] for r in stored}
                lost += [f"{user}/{kind}/{i}" for i in sorted(missing)]
    return lost


# ------------------------------------------------------------------------------- report
def percentile(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def report(
    results: Results,
    elapsed: float,
    peak_rss: int,
    lost: list[str],
    served_alone: list[float],
    args: Any,
) -> dict[str, Any]:
    table = Table(title=f"{args.clients} clients for {args.duration:.0f} s on {args.backend}")
    for column in ("request", "n", "statuses", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms"):
        table.add_column(column, justify="left" if column in {"request", "statuses"} else "right")
    kinds: dict[str, Any] = {}
    for kind, values in sorted(results.latencies.items()):
        row: dict[str, Any] = {
            "n": len(values),
            "statuses": {str(k): v for k, v in sorted(results.statuses[kind].items())},
            "per_s": len(values) / elapsed,
            "p50_ms": percentile(values, 50),
            "p95_ms": percentile(values, 95),
            "p99_ms": percentile(values, 99),
            "max_ms": max(values),
        }
        kinds[kind] = row
        table.add_row(
            kind,
            str(row["n"]),
            " ".join(f"{k}: {v}" for k, v in row["statuses"].items()),
            f"{row['per_s']:.1f}",
            *(f"{row[c]:.0f}" for c in ("p50_ms", "p95_ms", "p99_ms", "max_ms")),
        )
    console.print(table)
    total = sum(len(v) for v in results.latencies.values())
    writes = sum(len(v) for v in results.acked_documents.values()) + sum(
        len(v) for v in results.acked_interactions.values()
    )
    summary = {
        "clients": args.clients,
        "generators": args.generators,
        "duration_s": args.duration,
        "elapsed_s": elapsed,
        "backend": args.backend,
        "write_concurrency": args.writes,
        "requests": total,
        "requests_per_s": total / elapsed,
        "records_written": writes,
        "records_per_s": writes / elapsed,
        "lost_writes": len(lost),
        "server_errors": sum(
            c for s in results.statuses.values() for k, c in s.items() if k >= 500
        ),
        "error_responses": len(results.error_responses),
        "transport_errors": len(results.transport_errors),
        "peak_rss_mib": peak_rss / 2**20,
        "generation_served_alone_ms_p50": statistics.median(served_alone),
        "generation": {
            name: {"p50": percentile(values, 50), "max": max(values)}
            for name, values in (
                ("served_ms", results.served_ms),
                ("model_ms", results.decode_ms),
                ("queue_wait_ms", results.queue_wait_ms),
            )
            if values
        },
        "kinds": kinds,
    }
    console.print(
        f"{total} requests in {elapsed:.1f} s ({summary['requests_per_s']:.1f}/s); "
        f"{writes} records acknowledged ({summary['records_per_s']:.1f}/s), "
        f"{len(lost)} lost; server peak RSS {summary['peak_rss_mib']:.0f} MiB"
    )
    if results.served_ms:
        g = summary["generation"]
        console.print(
            f"generation p50: {g['served_ms']['p50']:.0f} ms served "
            f"({g['model_ms']['p50']:.0f} ms of it the model), "
            f"{g['queue_wait_ms']['p50']:.0f} ms queued (max {g['queue_wait_ms']['max']:.0f}); "
            f"served alone before the load: {summary['generation_served_alone_ms_p50']:.0f} ms "
            f"({g['served_ms']['p50'] / summary['generation_served_alone_ms_p50']:.1f}x under load)"
        )
    return summary


def run_once(args: Any, llm: str) -> tuple[dict[str, Any], list[str]]:
    """One load test against a fresh server whose LLM backend is ``llm``: its summary and its
    problems (lost writes, error responses, transport errors)."""
    with tempfile.TemporaryDirectory() as folder:
        store = args.store or f"sqlite:///{folder}/load.db"
        args.backend = store.split(":", 1)[0]
        options = ["--dev", "--slots", "1", "--queue", "64", "--writes", str(args.writes)]
        options += ["--backend", llm]
        with serve_in_subprocess(store, Path(folder), options=options) as server:
            console.print(
                f"server {server.url} (pid {server.pid}) on {args.backend}, LLM {llm}; seeding"
            )
            key, users = set_up(server, args.users)
            served_alone = alone(server.url, key, users)
            rss = PeakRSS(server.pid)
            rss.start()
            console.print(
                f"{len(users)} users seeded; {args.clients} clients "
                f"({args.generators} generating) for {args.duration:.0f} s"
            )
            results, elapsed = asyncio.run(
                load(server.url, key, users, args.clients, args.generators, args.duration)
            )
            rss.done.set()
            rss.join()
            lost = lost_writes(server.url, key, results)
            summary = report(results, elapsed, rss.peak, lost, served_alone, args)
    summary["llm_backend"] = llm
    return summary, lost[:10] + results.error_responses[:10] + results.transport_errors[:10]


def compare(summaries: dict[str, dict[str, Any]]) -> None:
    """Generation under load, one column per LLM backend (ratios against the first)."""
    first = next(iter(summaries.values()))
    table = Table(title="Generation under the same load, per LLM backend")
    table.add_column("measure")
    for llm in summaries:
        table.add_column(llm, justify="right")
    rows: dict[str, Callable[[dict[str, Any]], float]] = {
        "generate p50 ms": lambda s: s["kinds"]["generate"]["p50_ms"],
        "generate p99 ms": lambda s: s["kinds"]["generate"]["p99_ms"],
        "generations/s": lambda s: s["kinds"]["generate"]["per_s"],
        "model ms p50": lambda s: s["generation"]["model_ms"]["p50"],
        "served alone ms p50": lambda s: s["generation_served_alone_ms_p50"],
        "requests/s": lambda s: s["requests_per_s"],
        "peak RSS MiB": lambda s: s["peak_rss_mib"],
    }
    for name, value in rows.items():
        base = value(first)
        cells = [
            f"{value(s):.0f}" if value(s) >= 10 else f"{value(s):.2f}" for s in summaries.values()
        ]
        cells[1:] = [
            f"{c} ({value(s) / base:.2f}x)"
            for c, s in zip(cells[1:], list(summaries.values())[1:], strict=True)
        ]
        table.add_row(name, *cells)
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--generators", type=int, default=10, help="of the clients")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--users", type=int, default=40, help="seeded reviewers")
    parser.add_argument("--writes", type=int, default=1, help="the server's write concurrency")
    parser.add_argument("--store", help="store URL (default: a fresh SQLite file)")
    parser.add_argument("--llm", default="onnx", help="LLM backends, comma-separated, one run each")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if not 0 <= args.generators < args.clients:
        parser.error("--generators must be at least 0 and fewer than --clients")
    summaries: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for llm in args.llm.split(","):
        summaries[llm], found = run_once(args, llm)
        problems += found
    if len(summaries) > 1:
        compare(summaries)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summaries, indent=2) + "\n", encoding="utf-8")
    console.print(f"wrote {args.out}")
    for line in problems:
        console.print(line, style="red", markup=False)
    if problems:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
