"""schemathesis against the service's OpenAPI schema: no generated input gives a 5xx.

Every operation gets generated requests with a real tenant key (the admin key for admin
operations), against a store holding a user and an item, so valid inputs reach the handlers,
the store and the model."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings

from p13n.server.tenants import TenantSettings
from tests.server_support import ADMIN, Service, make_service


def _service() -> Service:
    # Built at import: schemathesis parametrizes the test from the app's schema at collection.
    folder = Path(tempfile.mkdtemp(prefix="p13n-schema-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # lives as long as the session
    unlimited = {"acme": TenantSettings(rate_limit_per_minute=1_000_000)}
    service = make_service(f"sqlite:///{folder}/p13n.db", unlimited, max_new_tokens=4)
    records = [
        {"type": "user", "id": "u", "attributes": {"a": "b"}},
        {"type": "document", "user_id": "u", "text": "I like tea and trains."},
        {"type": "item", "id": "i", "title": "Tea"},
        {"type": "interaction", "user_id": "u", "item_id": "i", "kind": "view"},
    ]
    done = service.client.post(
        "/v1/ingest", json={"records": records}, headers=service.headers("acme")
    )
    assert done.status_code == 201, done.text
    warm = service.client.post(  # loads the model once, outside any generated request
        "/v1/generate", json={"user": "u", "input": "hi"}, headers=service.headers("acme")
    )
    assert warm.status_code == 200, warm.text
    return service


SERVICE = _service()
schema = schemathesis.openapi.from_asgi("/openapi.json", SERVICE.app)


@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_generated_request_gives_a_server_error(case: Any) -> None:
    headers = ADMIN if case.path.startswith("/v1/admin") else SERVICE.headers("acme")
    response = case.call(headers=headers, timeout=120)
    assert response.status_code < 500, (
        f"{case.method} {case.path} → {response.status_code}: {response.text[:500]}"
    )
