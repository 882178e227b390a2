"""``p13n personas``: list, discover and refresh personas; where a user stands with the router."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from p13n.cli import _fail, _open, _settings, app, console, progress_display
from p13n.config import Settings
from p13n.errors import P13nError
from p13n.store import Store

personas_app = typer.Typer(help="Personas: declared, discovered by clustering, and global.")
app.add_typer(personas_app, name="personas")


def _excerpt(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def print_personas(store: Store) -> None:
    """One entry per persona: id, source, version, members, defining attributes, description
    (a list rather than a table: descriptions stay readable in a narrow terminal)."""
    from p13n.personalize.personas import PersonaSet

    found = PersonaSet.read(store)
    rows = [*found.groups, *([found.global_profile] if found.global_profile else [])]
    if not rows:
        console.print("[dim]no personas: ingest persona records or run `p13n personas discover`[/]")
        return
    console.print(f"[bold]{len(rows)} personas[/] of tenant {store.tenant!r}", highlight=False)
    for p in rows:
        members = "everyone" if p.source == "global" else f"{len(p.persona.members)} members"
        attributes = ", ".join(f"{k}={v}" for k, v in p.attributes.items())
        console.print(
            f"[bold]{escape(p.id)}[/]  {p.source} v{p.version} · {members}"
            + (f" · {escape(attributes)}" if attributes else ""),
            highlight=False,
        )
        console.print(f"    {escape(p.description)}", highlight=False)


@personas_app.command("list")
def list_personas(ctx: typer.Context) -> None:
    """List the personas (declared, discovered, global) with their members and descriptions."""
    try:
        print_personas(_open(_settings(ctx)))
    except P13nError as error:
        raise _fail(error) from None


@personas_app.command()
def discover(
    ctx: typer.Context,
    personas: Annotated[
        int | None, typer.Option(help="How many personas; default: chosen by silhouette.")
    ] = None,
    min_personas: Annotated[int, typer.Option(help="Fewest personas to try.")] = 2,
    max_personas: Annotated[int, typer.Option(help="Most personas to try.")] = 8,
    seed: Annotated[int, typer.Option(help="k-means seed (discovery is deterministic).")] = 0,
    min_documents: Annotated[
        int, typer.Option(help="Users with fewer embedded documents are not clustered.")
    ] = 1,
    attribute_weight: Annotated[
        float, typer.Option(help="Weight of user attributes against their text (0: ignore).")
    ] = 1.0,
    force: Annotated[
        bool, typer.Option("--force", help="Rediscover even if nothing changed.")
    ] = False,
    backend: Annotated[str | None, typer.Option(help="LLM backend for descriptions.")] = None,
) -> None:
    """Cluster users by their profile embeddings and attributes, have the LLM describe each
    cluster and the whole population, and store them (a new version; declared personas stay)."""
    from p13n.cli_generate import _llm_config
    from p13n.encode import get_encoder
    from p13n.llm import get_llm
    from p13n.personalize.personas import DiscoveryConfig, discover_personas

    try:
        settings = _settings(ctx)
        store = _open(settings)
        config = DiscoveryConfig(
            n_personas=personas,
            min_personas=min_personas,
            max_personas=max_personas,
            seed=seed,
            min_documents=min_documents,
            attribute_weight=attribute_weight,
        )
        with progress_display() as progress:
            bars: dict[str, object] = {}

            def report(stage: str, done: int, total: int) -> None:
                if stage not in bars:
                    bars[stage] = progress.add_task(stage, total=total)
                progress.update(bars[stage], completed=done, total=total)  # type: ignore[arg-type]

            result = discover_personas(
                store,
                get_encoder(settings.encoder),
                get_llm(_llm_config(settings, backend)),
                config,
                force=force,
                progress=report,
            )
        if not result.refreshed:
            console.print(
                f"personas are up to date (version {result.version}, {result.users} users; "
                "--force rediscovers)"
            )
        else:
            chosen = f"; silhouette by k: {result.silhouette}" if result.silhouette else ""
            removed = f"; removed {', '.join(result.removed)}" if result.removed else ""
            console.print(
                f"discovered {len(result.personas)} personas from {result.users} users, "
                f"version {result.version}{chosen}{removed}",
                highlight=False,
            )
        print_personas(store)
    except P13nError as error:
        raise _fail(error) from None
    except ValueError as error:
        raise _fail(P13nError(str(error))) from None


def print_membership(store: Store, settings: Settings, user_id: str) -> None:
    """The user's personas, and the level the configured router would serve them at."""
    from p13n.cli_generate import granularity_config
    from p13n.encode import get_encoder
    from p13n.personalize.personas import PersonaSet
    from p13n.personalize.router import Router
    from p13n.retrieve import CorpusLoader

    found = PersonaSet.read(store)
    member_of = store.personas_of(user_id)
    for persona_id in member_of:
        persona = found.get(persona_id)
        if persona is None:
            continue
        console.print(
            f"persona [bold]{persona.id}[/] ({persona.source}, v{persona.version}, "
            f"{len(persona.persona.members)} members): {_excerpt(persona.description, 160)}",
            highlight=False,
        )
    if not member_of:
        console.print("persona: [dim]not a member of any[/]")
    config = granularity_config(settings)
    if config.level == "user":
        config = config.model_copy(update={"level": "auto"})  # show where the router stands
    loader = CorpusLoader(store, get_encoder(settings.encoder))
    route = Router(store, loader, config).route(user_id, known=True)
    via = f" via persona {route.persona} ({route.placed_by})" if route.persona else ""
    console.print(f"router: {route.level} level{via}: {route.reason}", highlight=False)
