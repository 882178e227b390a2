"""The store's data: ``ingest``, ``users``, ``show``, ``forget``, ``vacuum`` and ``migrate``."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from p13n.cli.common import (
    command_settings,
    console,
    handles_p13n_errors,
    print_membership,
    print_report,
    run_ingest,
    show_users,
    tenant_store,
)
from p13n.datasets import LoadOptions, loaders
from p13n.datasets.generic import load_csv
from p13n.errors import UnknownUserError
from p13n.paths import recommenders_dir
from p13n.personalize.policy import read_policy
from p13n.recommend.service import delete_saved

# The choices are the registered loaders; mypy cannot see members built at run time.
DatasetFormat = StrEnum(  # type: ignore[misc]
    "DatasetFormat", {name: name for name in loaders.names()}
)
"""The format of a file or folder ``p13n ingest`` reads: one per registered dataset loader."""


@handles_p13n_errors
def ingest_command(
    ctx: typer.Context,
    source: Annotated[DatasetFormat, typer.Argument(help="Format of PATH.")],
    path: Annotated[Path, typer.Argument(help="File or folder to read.")],
    record_type: Annotated[
        str | None, typer.Option("--type", help="CSV record type (default: from the file name).")
    ] = None,
    embed: Annotated[bool | None, typer.Option(help="Embed documents and items at ingest.")] = None,
    max_document_chars: Annotated[int | None, typer.Option(help="Longest text accepted.")] = None,
    max_attribute_chars: Annotated[
        int | None, typer.Option(help="Longest attributes or metadata accepted, as JSON.")
    ] = None,
) -> None:
    """Ingest a dataset or your own JSONL/CSV files; one transaction per call."""
    settings = command_settings(
        ctx,
        embed=embed,
        max_document_chars=max_document_chars,
        max_attribute_chars=max_attribute_chars,
    )
    options = LoadOptions(
        max_text_chars=settings.max_document_chars,
        max_attribute_chars=settings.max_attribute_chars,
    )
    if source.value == "csv":  # the one loader that takes the record type
        records = load_csv(path, options, record_type)
    else:
        records = loaders.get(source.value)(path, options)
    store = tenant_store(settings)
    print_report(run_ingest(store, records, settings))


@handles_p13n_errors
def users(
    ctx: typer.Context, limit: Annotated[int, typer.Option(help="Rows to show.")] = 50
) -> None:
    """List the users of the tenant with their counts."""
    show_users(tenant_store(command_settings(ctx)), limit)


@handles_p13n_errors
def show(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="User id.")],
    limit: Annotated[int, typer.Option(help="Latest documents and interactions to show.")] = 5,
) -> None:
    """Show one user: attributes, counts, latest documents and interactions."""
    settings = command_settings(ctx)
    store = tenant_store(settings)
    record = store.get_user(user)
    if record is None:
        raise UnknownUserError(user, store.tenant)
    counts = store.user_counts(user)
    console.print(f"[bold]{record.id}[/]  {json.dumps(record.attributes, ensure_ascii=False)}")
    console.print(
        f"{counts.documents} documents ({counts.embeddings} embedded), "
        f"{counts.interactions} interactions, {counts.preferences} preferences"
    )
    print_membership(store, settings, user)
    for adapter in store.adapters(user_id=user):
        console.print(
            f"adapter {escape(adapter.adapter_id)}: {adapter.method} on {adapter.base_model}, "
            f"{adapter.data_size} examples, {adapter.size_bytes / 1e6:.1f} MB, "
            f"trained {adapter.created_at:%Y-%m-%d %H:%M}",
            highlight=False,
        )
    for stored in store.policies():  # what a Personalizer with policy "auto" serves them
        policy = read_policy(stored.policy, f"stored policy of task {stored.task!r}")
        missing = policy.missing_adapter(store, user)
        served = policy.fallback.choice if missing and policy.fallback else policy.choice
        why = f" (its fallback: no {policy.adapter} adapter)" if missing else ""
        console.print(
            f"policy for {escape(stored.task)}: serves {escape(served)}{why} "
            "(`p13n policy list` shows its dev evidence)",
            highlight=False,
        )
    documents = Table(title="latest documents", title_justify="left")
    for column in ("when", "kind", "title", "text"):
        documents.add_column(column)
    for d in store.documents(user, limit=limit):
        when = d.timestamp.date().isoformat() if d.timestamp else "-"
        text = d.text if len(d.text) <= 80 else d.text[:79] + "…"
        documents.add_row(when, d.kind, d.title or "", text)
    console.print(documents)
    interactions = Table(title="latest interactions", title_justify="left")
    for column in ("when", "kind", "item", "value"):
        interactions.add_column(column)
    latest = store.interactions(user, limit=limit)
    titles = {item.id: item.title for item in store.items([i.item_id for i in latest])}
    for i in latest:
        when = i.timestamp.date().isoformat() if i.timestamp else "-"
        value = "" if i.value is None else f"{i.value:g}"
        interactions.add_row(when, i.kind, titles.get(i.item_id, i.item_id), value)
    console.print(interactions)


@handles_p13n_errors
def forget(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="User id.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete every row of a user (attributes, documents, embeddings, interactions, preferences,
    memberships, profiles, adapters), erase them from the store's files where the backend can,
    and delete the tenant's saved recommenders (they are refitted on next use)."""
    store = tenant_store(command_settings(ctx))
    if store.get_user(user) is None:
        raise UnknownUserError(user, store.tenant)
    if not yes:
        typer.confirm(f"Forget user {user!r} in tenant {store.tenant!r}?", abort=True)
    deleted = store.forget(user)
    left = store.scrub()
    saved = delete_saved(recommenders_dir(store.tenant))
    console.print(
        f"forgot {user!r}: " + ", ".join(f"{n} {table}" for table, n in deleted.items() if n)
    )
    if saved:
        console.print(f"deleted {len(saved)} saved recommenders of tenant {store.tenant!r}")
    if left is not None:
        console.print(f"[yellow]note:[/yellow] {escape(left)}")


@handles_p13n_errors
def vacuum(ctx: typer.Context) -> None:
    """Rewrite the whole store (every tenant) so that deleted and forgotten rows leave nothing in
    its files. Tables are locked while this runs: schedule it (see docs/SERVICE.md, forget)."""
    store = tenant_store(command_settings(ctx))
    with console.status(f"vacuuming {store!r}"):
        left = store.vacuum()
    console.print(f"vacuumed {store!r}")
    for note in left:
        console.print(f"[yellow]still left:[/yellow] {escape(note)}")


@handles_p13n_errors
def migrate(ctx: typer.Context) -> None:
    """Upgrade the store's schema in place (opening a store does this too)."""
    store = tenant_store(command_settings(ctx))
    console.print(f"{store!r} is at schema revision {store.schema_revision()}")
