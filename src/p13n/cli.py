"""The ``p13n`` command line: ingest data, look at users, forget them; generation commands
(``generate``, ``chat``, ``serve-llm``, ``demo``) are in ``cli_generate``."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from p13n.config import Settings, load_settings
from p13n.datasets import LoadOptions, Sourced, loaders
from p13n.datasets.generic import load_csv
from p13n.errors import P13nError
from p13n.ingest import IngestReport, ingest
from p13n.paths import recommenders_dir
from p13n.store import Store, open_store

app = typer.Typer(
    help="Personalize any LLM with a user's own data.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
console = Console()
errors = Console(stderr=True)


class Source(StrEnum):
    movielens = "movielens"
    amazon = "amazon"
    jsonl = "jsonl"
    csv = "csv"


@app.callback()
def main(
    ctx: typer.Context,
    store: Annotated[str | None, typer.Option(help="Store URL (env P13N_STORE).")] = None,
    tenant: Annotated[str | None, typer.Option(help="Tenant (env P13N_TENANT).")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML config file (env P13N_CONFIG).")] = None,
) -> None:
    """Options given here apply to every command."""
    ctx.obj = {"config": config, "store": store, "tenant": tenant}


def _settings(ctx: typer.Context, **overrides: object) -> Settings:
    return load_settings(
        ctx.obj["config"], store=ctx.obj["store"], tenant=ctx.obj["tenant"], **overrides
    )


def _open(settings: Settings) -> Store:
    return open_store(settings.store, tenant=settings.tenant)


def _fail(error: P13nError) -> typer.Exit:
    # Escaped: messages quote user input and pydantic's "[type=..., input_value=...]" details.
    errors.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
    return typer.Exit(code=1)


def progress_display(target: Console | None = None) -> Progress:
    """The CLI's transient progress bars (description, bar, done/total, elapsed)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=target or console,
        transient=True,
    )


def run_ingest(store: Store, records: Iterable[Sourced], settings: Settings) -> IngestReport:
    """Ingest with a progress display on stderr."""
    from p13n.encode import get_encoder

    encoder = get_encoder(settings.encoder) if settings.embed else None
    with progress_display(errors) as progress:
        task = progress.add_task("reading", total=None)

        def counted(items: Iterable[Sourced]) -> Iterator[Sourced]:
            for n, item in enumerate(items, start=1):
                if n % 1000 == 0:
                    progress.update(task, completed=n)
                yield item

        def on_progress(stage: str, done: int, total: int) -> None:
            progress.update(task, description="embedding", completed=done, total=total)

        return ingest(store, counted(records), encoder=encoder, progress=on_progress)


def _print_report(report: IngestReport) -> None:
    table = Table(title=f"ingested in {report.seconds:.1f}s", title_justify="left")
    for column in ("records", "added", "updated", "unchanged"):
        table.add_column(column, justify="right" if column != "records" else "left")
    for kind, counts in report.counts.items():
        if counts.added or counts.updated or counts.unchanged:
            table.add_row(kind, str(counts.added), str(counts.updated), str(counts.unchanged))
    console.print(table)
    console.print(
        f"{report.users_referenced} users referenced; {report.embedded} texts embedded"
        + (f" with {report.encoder_id}" if report.encoder_id else " (embeddings off)")
    )


@app.command("ingest")
def ingest_command(
    ctx: typer.Context,
    source: Annotated[Source, typer.Argument(help="Format of PATH.")],
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
    try:
        settings = _settings(
            ctx,
            embed=embed,
            max_document_chars=max_document_chars,
            max_attribute_chars=max_attribute_chars,
        )
        options = LoadOptions(
            max_text_chars=settings.max_document_chars,
            max_attribute_chars=settings.max_attribute_chars,
        )
        if source is Source.csv:
            records = load_csv(path, options, record_type)
        else:
            records = loaders.get(source.value)(path, options)
        store = _open(settings)
        _print_report(run_ingest(store, records, settings))
    except P13nError as error:
        raise _fail(error) from None


def _attributes(attributes: Mapping[str, object], width: int = 60) -> str:
    text = ", ".join(f"{k}={v}" for k, v in attributes.items())
    return text if len(text) <= width else text[: width - 1] + "…"


def show_users(store: Store, limit: int) -> None:
    summaries = store.list_users(limit=limit)
    total = store.count_users()
    table = Table(title=f"{total} users in tenant {store.tenant!r}", title_justify="left")
    for column in ("user", "documents", "interactions", "preferences", "attributes"):
        table.add_column(
            column,
            justify="right" if column not in ("user", "attributes") else "left",
            no_wrap=True,
        )
    for summary in summaries:
        c = summary.counts
        table.add_row(
            summary.user.id,
            str(c.documents),
            str(c.interactions),
            str(c.preferences),
            _attributes(summary.user.attributes, width=max(20, console.width - 60)),
        )
    console.print(table)
    if total > len(summaries):
        console.print(f"… {total - len(summaries)} more (use --limit)")


@app.command()
def users(
    ctx: typer.Context, limit: Annotated[int, typer.Option(help="Rows to show.")] = 50
) -> None:
    """List the users of the tenant with their counts."""
    try:
        show_users(_open(_settings(ctx)), limit)
    except P13nError as error:
        raise _fail(error) from None


@app.command()
def show(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="User id.")],
    limit: Annotated[int, typer.Option(help="Latest documents and interactions to show.")] = 5,
) -> None:
    """Show one user: attributes, counts, latest documents and interactions."""
    try:
        from p13n.cli_personas import print_membership

        settings = _settings(ctx)
        store = _open(settings)
        record = store.get_user(user)
        if record is None:
            raise _fail_unknown(user, store)
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
    except P13nError as error:
        raise _fail(error) from None


def _fail_unknown(user: str, store: Store) -> typer.Exit:
    from p13n.errors import UnknownUserError

    return _fail(UnknownUserError(user, store.tenant))


@app.command()
def forget(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="User id.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete every row of a user (attributes, documents, embeddings, interactions, preferences,
    memberships, profiles, adapters), erase them from the store's files where the backend can,
    and delete the tenant's saved recommenders (they are refitted on next use)."""
    try:
        store = _open(_settings(ctx))
        if store.get_user(user) is None:
            raise _fail_unknown(user, store)
        if not yes:
            typer.confirm(f"Forget user {user!r} in tenant {store.tenant!r}?", abort=True)
        deleted = store.forget(user)
        left = store.scrub()
        saved = sorted(recommenders_dir(store.tenant).glob("*.pkl"))
        for path in saved:
            path.unlink()
        console.print(
            f"forgot {user!r}: " + ", ".join(f"{n} {table}" for table, n in deleted.items() if n)
        )
        if saved:
            console.print(f"deleted {len(saved)} saved recommenders of tenant {store.tenant!r}")
        if left is not None:
            console.print(f"[yellow]note:[/yellow] {escape(left)}")
    except P13nError as error:
        raise _fail(error) from None


@app.command()
def vacuum(ctx: typer.Context) -> None:
    """Rewrite the whole store (every tenant) so that deleted and forgotten rows leave nothing in
    its files. Tables are locked while this runs: schedule it (see docs/SERVICE.md, forget)."""
    try:
        store = _open(_settings(ctx))
        with console.status(f"vacuuming {store!r}"):
            left = store.vacuum()
        console.print(f"vacuumed {store!r}")
        for note in left:
            console.print(f"[yellow]still left:[/yellow] {escape(note)}")
    except P13nError as error:
        raise _fail(error) from None


@app.command()
def migrate(ctx: typer.Context) -> None:
    """Upgrade the store's schema in place (opening a store does this too)."""
    try:
        store = _open(_settings(ctx))
        console.print(f"{store!r} is at schema revision {store.schema_revision()}")
    except P13nError as error:
        raise _fail(error) from None


# Generation, task and benchmark commands live in their own modules; importing registers them.
from p13n import (  # noqa: E402, F401
    cli_adapt,
    cli_bench,
    cli_generate,
    cli_indirect,
    cli_personas,
    cli_recommend,
    cli_serve,
    cli_tasks,
)
