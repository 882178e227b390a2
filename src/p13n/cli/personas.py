"""``p13n personas``: list, discover and refresh personas."""

from __future__ import annotations

from typing import Annotated

import typer

from p13n.cli.common import (
    command_settings,
    console,
    handles_p13n_errors,
    llm_config,
    print_personas,
    progress_display,
    tenant_store,
)

personas_app = typer.Typer(help="Personas: declared, discovered by clustering, and global.")


@personas_app.command("list")
@handles_p13n_errors
def list_personas(ctx: typer.Context) -> None:
    """List the personas (declared, discovered, global) with their members and descriptions."""
    print_personas(tenant_store(command_settings(ctx)))


@personas_app.command()
@handles_p13n_errors(value_errors="")
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
    from p13n.encode import get_encoder
    from p13n.llm import get_llm
    from p13n.personalize.personas import DiscoveryConfig, discover_personas

    settings = command_settings(ctx)
    store = tenant_store(settings)
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
            get_llm(llm_config(settings, backend)),
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
