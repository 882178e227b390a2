"""Shared by the service's tests: an app with tenants and keys, and a live loopback server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from p13n.server.app import create_app
from p13n.server.process import free_port
from p13n.server.state import DEV_ADMIN_KEY, ServerConfig, ServerState
from p13n.server.tenants import TenantSettings

ADMIN = {"Authorization": f"Bearer {DEV_ADMIN_KEY}"}


@dataclass
class Service:
    app: FastAPI
    client: TestClient
    keys: dict[str, str]

    @property
    def state(self) -> ServerState:
        state: ServerState = self.app.state.p13n
        return state

    def headers(self, tenant: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[tenant]}"}


def make_service(
    store_url: str,
    tenants: dict[str, TenantSettings] | None = None,
    **config: object,
) -> Service:
    """The app over ``store_url`` with these tenants (default: acme and globex), a key each."""
    app = create_app(ServerConfig(store=store_url, environment="development", **config))  # type: ignore[arg-type]
    client = TestClient(app)
    keys: dict[str, str] = {}
    for name, settings in (
        tenants or {"acme": TenantSettings(), "globex": TenantSettings()}
    ).items():
        created = client.post(
            "/v1/admin/tenants",
            json={"name": name, "settings": settings.model_dump(mode="json")},
            headers=ADMIN,
        )
        assert created.status_code == 201, created.text
        key = client.post(f"/v1/admin/tenants/{name}/keys", json={"label": "t"}, headers=ADMIN)
        assert key.status_code == 201, key.text
        keys[name] = key.json()["key"]
    return Service(app, client, keys)


@contextmanager
def live_server(app: FastAPI) -> Iterator[str]:
    """``app`` served by uvicorn on a loopback port in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
