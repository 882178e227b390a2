"""A bounded fuzzing run of the service against its own OpenAPI schema (issue #19).

``p13n serve`` runs in its own process on a fresh store (a SQLite file by default,
``--store postgresql://...`` for PostgreSQL), with embedding and redaction on. Text generation
is left out (each answer would take the embedded model seconds): ``/v1/generate`` and chat
completions by path, explained recommendations by a filter in ``bench/fuzz_checks.py``. As a
guard, the server's LLM is an OpenAI-compatible endpoint on a loopback port where nothing
listens: a request that reached the model anyway would fail fast with a 502, counted as a 5xx.
A tenant with an unreachable rate limit is created and seeded with a few users, items and
interactions, so that generated requests reach existing data too.

schemathesis then runs every phase (coverage, fuzzing, stateful) with every check for
``--minutes``, split between the tenant's operations (its key) and the admin operations (the
admin key). Every check counts: a 5xx, a response that does not match the documented schema or
status, schema-valid data refused or schema-invalid data accepted, a missing ``Allow`` header.
The one exception is written out in ``bench/fuzz_checks.py``: a schema-valid request refused
with 422 for one of the two rules JSON Schema cannot state (a preference whose chosen and
rejected texts are equal; an id repeated in a batch with other content).

Printed: test cases run, failures by schemathesis code, errors (an operation schemathesis could
not generate requests for counts: it went untested), and the server's own count of answers
by status during the runs (from ``/metrics``), so the number of 5xx comes from the server, not
the client.
Exits 1 on any failure, error or 5xx.

    .venv/bin/python bench/fuzz_service.py                      # 10 minutes on SQLite
    .venv/bin/python bench/fuzz_service.py --minutes 2 --store postgresql://postgres@127.0.0.1/test
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from p13n.server.process import free_port, serve_in_subprocess
from p13n.server.state import DEV_ADMIN_KEY

HERE = Path(__file__).resolve().parent
ADMIN = {"Authorization": f"Bearer {DEV_ADMIN_KEY}"}
SEED = [
    {"type": "user", "id": "ada", "attributes": {"age": 34, "plan": "pro"}},
    {"type": "user", "id": "bo", "attributes": {"age": 51}},
    {"type": "document", "user_id": "ada", "id": "d1", "text": "I like green tea and trains."},
    {"type": "document", "user_id": "bo", "id": "d2", "text": "Opera on Sundays.", "title": "x"},
    {"type": "item", "id": "tea", "title": "Green tea", "text": "A drink."},
    {"type": "item", "id": "train", "title": "Night train"},
    {"type": "interaction", "user_id": "ada", "item_id": "tea", "kind": "view"},
    {"type": "interaction", "user_id": "ada", "item_id": "train", "kind": "rate", "value": 4},
    {"type": "interaction", "user_id": "bo", "item_id": "tea", "kind": "view"},
    {"type": "preference", "user_id": "ada", "prompt": "p", "chosen": "a", "rejected": "b"},
]
console = Console()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="time for both runs together")
    parser.add_argument("--store", help="store URL (default: a SQLite file in a temp folder)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bench/out/fuzz"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="p13n-fuzz-") as tmp:
        folder = Path(tmp)
        store = args.store or f"sqlite:///{folder / 'p13n.db'}"
        nowhere = f"http://127.0.0.1:{free_port()}/v1"  # no LLM: nothing is generated
        env = {
            "OMP_NUM_THREADS": "1",
            "P13N_EMBED": "1",
            "P13N_LLM_BACKEND": "openai",
            "P13N_LLM_BASE_URL": nowhere,
            "P13N_LLM_MODEL": "unreachable",
        }
        with serve_in_subprocess(store, folder, name="fuzz", env=env) as server:
            key = _tenant(server.url)
            before = _server_statuses(server.url)  # the start's /readyz polls, the seeding
            budget = args.minutes * 60
            tenant_scope = ["--exclude-path-regex", "^/v1/(admin|generate|chat)"]
            admin_scope = ["--include-path-regex", "^/v1/admin"]
            runs = {
                "tenant": _schemathesis(server.url, key, tenant_scope, 0.8 * budget, args),
                "admin": _schemathesis(server.url, DEV_ADMIN_KEY, admin_scope, 0.2 * budget, args),
            }
            statuses = _server_statuses(server.url) - before
            errors = server.output()
    return _report(runs, statuses, errors, args.out)


def _tenant(url: str) -> str:
    """A tenant that no rate limit stops, with a key, seeded with a little data."""
    with httpx.Client(base_url=url, timeout=60) as http:
        made = http.post(
            "/v1/admin/tenants",
            json={"name": "fuzz", "settings": {"rate_limit_per_minute": 1_000_000_000}},
            headers=ADMIN,
        )
        made.raise_for_status()
        key: str = http.post("/v1/admin/tenants/fuzz/keys", json={}, headers=ADMIN).json()["key"]
        seeded = http.post(
            "/v1/ingest", json={"records": SEED}, headers={"Authorization": f"Bearer {key}"}
        )
        seeded.raise_for_status()
    return key


def _schemathesis(
    url: str, key: str, scope: list[str], seconds: float, args: argparse.Namespace
) -> dict[str, Any]:
    """One schemathesis run; its JSON report."""
    name = "admin" if key == DEV_ADMIN_KEY else "tenant"
    report = args.out / f"{name}.json"
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{url}/openapi.json",
        "-H",
        f"Authorization: Bearer {key}",
        *scope,
        "--checks",
        "all",
        "--exclude-checks",
        "positive_data_acceptance",  # replaced by bench/fuzz_checks.py's, which runs it
        "--max-time",
        str(max(1, int(seconds))),
        "--workers",
        "1",
        "--seed",
        str(args.seed),
        "--no-color",
        "--report",
        "json",
        "--report-json-path",
        str(report),
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(HERE / "fuzz_checks.py")}
    console.print(f"[bold]{name} operations[/]: schemathesis for {seconds / 60:.1f} min")
    started = time.monotonic()
    finished = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    (args.out / f"{name}.txt").write_text(finished.stdout + finished.stderr, encoding="utf-8")
    if not report.exists():
        raise SystemExit(f"schemathesis wrote no report:\n{finished.stdout[-3000:]}")
    result: dict[str, Any] = json.loads(report.read_text(encoding="utf-8"))
    result["wall_s"] = time.monotonic() - started
    return result


def _server_statuses(url: str) -> Counter[str]:
    """The server's own count of answers by status, from ``p13n_requests_total``."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    counts: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "p13n_requests_total":
                counts[sample.labels["status"]] += int(sample.value)
    return counts


def _report(runs: dict[str, dict[str, Any]], statuses: Counter[str], log: str, out: Path) -> int:
    table = Table(title="schemathesis against the live service", title_justify="left")
    for column in ("operations", "test cases", "failures", "errors", "minutes"):
        table.add_column(column, justify="right" if column != "operations" else "left")
    failures: Counter[str] = Counter()
    errors: list[str] = []
    cases = 0
    for name, run in runs.items():
        found = {f["code"]: f["count"] for f in run["failures"]}
        failures.update(found)
        # An operation schemathesis could not generate requests for is untested: an error.
        broken = [
            f"{name}: phase {phase} {result['status']}"
            for phase, result in run["phases"].items()
            if result["status"] == "error"
        ]
        broken += [f"{name}: {error}" for error in run["errors"]]
        errors += broken
        cases += run["test_cases"]["generated"]
        table.add_row(
            f"{name} ({run['operations']['tested']})",
            f"{run['test_cases']['generated']:,}",
            ", ".join(f"{code} x{n}" for code, n in sorted(found.items())) or "0",
            str(len(broken)),
            f"{float(run['wall_s']) / 60:.1f}",
        )
    console.print(table)
    server_errors = sum(n for status, n in statuses.items() if status.startswith("5"))
    answered = ", ".join(f"{s}: {n:,}" for s, n in sorted(statuses.items()))
    console.print(f"server answers by status during the runs (/metrics): {answered}")
    console.print(
        f"[bold]{cases:,} test cases, {sum(failures.values())} failures, {len(errors)} errors, "
        f"{server_errors} server errors (5xx)[/]; reports in {out}"
    )
    for error in errors:
        console.print(f"[red]error:[/] {error}")
    if server_errors:
        console.print(f"[red]server log (end):[/]\n{log[-3000:]}")
    return 1 if failures or errors or server_errors else 0


if __name__ == "__main__":
    sys.exit(main())
