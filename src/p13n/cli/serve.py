"""``p13n serve`` (the REST service and dashboard) and ``p13n tenants`` (tenants and keys,
from the machine the store lives on)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from p13n.cli.common import (
    ApiKeyEnvOption,
    BackendOption,
    BaseUrlOption,
    ModelOption,
    command_settings,
    console,
    handles_p13n_errors,
    personalizer_config,
)

tenants_app = typer.Typer(help="Tenants of the service and their API keys.")


@handles_p13n_errors(value_errors="")  # pydantic's message names the setting
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8080,
    dev: Annotated[
        bool,
        typer.Option("--dev", help="Development: the default admin key is allowed (printed)."),
    ] = False,
    slots: Annotated[int, typer.Option(help="Generations run at once on the model.")] = 1,
    queue: Annotated[int, typer.Option(help="Generations that may wait; then 503.")] = 64,
    writes: Annotated[
        int, typer.Option(help="Writes (redaction, embedding, transaction) run at once.")
    ] = 1,
    rate_limit_redis: Annotated[
        str | None,
        typer.Option(
            envvar="P13N_RATE_LIMIT_REDIS",
            help="redis://host:6379/0 to share rate limits among server processes.",
        ),
    ] = None,
    retriever: Annotated[str, typer.Option(help="Default retriever.")] = "bm25",
    k: Annotated[int, typer.Option(help="Default number of retrieved items.")] = 4,
    prompt: Annotated[str, typer.Option(help="Default prompt builder.")] = "contextual",
    max_new_tokens: Annotated[int, typer.Option(help="Default answer length (tokens).")] = 128,
    backend: BackendOption = None,
    model: ModelOption = None,
    base_url: BaseUrlOption = None,
    api_key_env: ApiKeyEnvOption = None,
    reports: Annotated[
        Path, typer.Option(help="Benchmark output folder shown on the dashboard.")
    ] = Path("bench/out"),
) -> None:
    """Serve the REST API, the OpenAI-compatible endpoint and the dashboard over the store
    (SQLite by default; --store postgresql://... for PostgreSQL). Outside --dev the admin key
    must be set in P13N_ADMIN_KEY."""
    import uvicorn
    from pydantic import SecretStr

    from p13n.server.app import create_app
    from p13n.server.state import ServerConfig

    settings = command_settings(ctx)
    defaults = personalizer_config(
        settings,
        task="chat",
        retriever=retriever,
        k=k,
        prompt=prompt,
        query="identity",
        backend=backend,
        model=model,
        base_url=base_url,
        api_key_env=api_key_env,
        max_new_tokens=max_new_tokens,
    )
    key = os.environ.get("P13N_ADMIN_KEY")
    config = ServerConfig(
        store=settings.store,
        environment="development" if dev else "production",
        admin_key=SecretStr(key) if key else None,
        llm=defaults.llm,
        encoder=settings.encoder,
        embed=settings.embed,
        generation_slots=slots,
        generation_queue=queue,
        write_concurrency=writes,
        rate_limit_redis=rate_limit_redis,
        reports_dir=reports,
        defaults=defaults,
    ).checked()
    application = create_app(config)
    console.print(
        f"p13n serving {settings.store} at http://{host}:{port}  (docs: /docs, "
        f"dashboard: /dashboard)"
    )
    if dev and not key:
        console.print("[yellow]development admin key:[/] p13n-dev-admin-key")
    uvicorn.run(application, host=host, port=port, log_level="warning")


def _registry(ctx: typer.Context):  # type: ignore[no-untyped-def]
    from p13n.server.tenants import TenantRegistry
    from p13n.store import open_store

    store = open_store(command_settings(ctx).store)
    return TenantRegistry(store.engine)  # type: ignore[attr-defined]


@tenants_app.command("create")
@handles_p13n_errors
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Tenant name.")],
    key: Annotated[bool, typer.Option(help="Also create an API key (printed once).")] = True,
) -> None:
    """Create a tenant (and a first API key)."""
    registry = _registry(ctx)
    registry.create_tenant(name)
    console.print(f"created tenant {name!r}")
    if key:
        secret, _ = registry.create_key(name, "created by p13n tenants create")
        console.print(f"API key (shown once): {secret}", highlight=False)


@tenants_app.command("key")
@handles_p13n_errors
def new_key(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Tenant name.")],
    label: Annotated[str, typer.Option(help="What the key is for.")] = "",
) -> None:
    """Create another API key for a tenant (printed once)."""
    secret, _ = _registry(ctx).create_key(name, label)
    console.print(f"API key (shown once): {secret}", highlight=False)


@tenants_app.command("list")
def list_tenants(ctx: typer.Context) -> None:
    """Tenants with their live keys."""
    registry = _registry(ctx)
    table = Table("tenant", "created", "live keys", "rate limit / min")
    for tenant in registry.tenants():
        live = [k for k in registry.keys(tenant.name) if k.revoked_at is None]
        table.add_row(
            tenant.name,
            tenant.created_at.isoformat(timespec="seconds"),
            str(len(live)),
            str(tenant.settings.rate_limit_per_minute),
        )
    console.print(table)
