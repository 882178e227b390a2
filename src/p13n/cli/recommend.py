"""``p13n recommend`` (serve from the store, with explanations) and ``p13n bench recsys`` (the
root wires it into ``bench``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from p13n.cli.common import (
    comma_separated,
    command_settings,
    console,
    handles_p13n_errors,
    llm_config,
    one_of,
    tenant_store,
)
from p13n.datasets import loaders
from p13n.llm import backends
from p13n.paths import recommenders_dir
from p13n.recommend.service import SERVABLE, saved_path

recommend_app = typer.Typer(
    help="Recommend items to a user from the store's interactions (fit once, then serve).",
    invoke_without_command=True,
)

ModelOption = Annotated[str, typer.Option(help=f"{one_of(SERVABLE)}.")]
KindsOption = Annotated[
    str | None, typer.Option(help="Interaction kinds to use, comma-separated (default: all).")
]


def _model_path(tenant: str, model: str) -> Path:
    return saved_path(recommenders_dir(tenant), model)


def _fitted(ctx: typer.Context, model: str, kinds: list[str] | None, refit: bool) -> Any:
    from p13n.encode import get_encoder
    from p13n.recommend.service import FittedRecommender, data_from_store, fingerprint
    from p13n.recommend.service import fit_recommender as fit_model

    settings = command_settings(ctx)
    store = tenant_store(settings)
    try:
        data = data_from_store(store, kinds)
    finally:
        store.close()
    path = _model_path(settings.tenant, model if kinds is None else f"{model}-{'+'.join(kinds)}")
    fitted = None if refit else FittedRecommender.load(path)
    if fitted is not None and fitted.fingerprint == fingerprint(data):
        return fitted
    with console.status(f"fitting {model} on {len(data):,} interactions"):
        fitted = fit_model(data, model, get_encoder(settings.encoder))
    fitted.save(path)
    console.print(f"[dim]fitted {model} on {len(data):,} interactions, saved to {path}[/dim]")
    return fitted


@recommend_app.callback()
@handles_p13n_errors
def recommend(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option(help="The user to recommend to.")] = None,
    k: Annotated[int, typer.Option("--k", "-k", help="How many items.")] = 10,
    model: ModelOption = "hybrid",
    kinds: KindsOption = None,
    explain: Annotated[bool, typer.Option(help="Explain each item from the user's history.")] = (
        False
    ),
    backend: Annotated[
        str | None,
        typer.Option(help=f"LLM backend for explanations: {one_of(backends.names())}."),
    ] = None,
    refit: Annotated[bool, typer.Option(help="Fit again even if a saved model is current.")] = (
        False
    ),
) -> None:
    """The user's top-k unseen items. A user without interactions, or one the store has never
    seen, gets the most popular items (the table says so)."""
    if ctx.invoked_subcommand is not None:
        return
    if user is None:
        raise typer.BadParameter("--user is required", param_hint="--user")
    fitted = _fitted(ctx, model, comma_separated(kinds), refit)
    texts = None
    if explain:
        from p13n.llm import get_llm
        from p13n.recommend.llm import RecommendationTexts

        texts = RecommendationTexts(get_llm(llm_config(command_settings(ctx), backend)))
    with console.status("recommending" + (" and explaining" if explain else "")):
        result = fitted.recommend(user, k, texts=texts)
    title = f"{result.model} for {result.user_id} ({result.history} interactions)"
    if result.fallback:
        title += f" - fallback: {result.fallback}, most popular items"
    table = Table(title=title)
    table.add_column("#", justify="right")
    table.add_column("item")
    table.add_column("title")
    table.add_column("score", justify="right")
    if explain:
        table.add_column("why")
    for rank, recommendation in enumerate(result.items, 1):
        cells = [
            str(rank),
            recommendation.item.id,
            recommendation.item.title,
            f"{recommendation.score:.3f}",
        ]
        if explain and recommendation.explanation is not None:
            cells.append(recommendation.explanation.text)
        table.add_row(*cells)
    console.print(table)
    for note in result.notes:
        console.print(f"[dim]{note}[/dim]")


@recommend_app.command("fit")
@handles_p13n_errors
def fit(ctx: typer.Context, model: ModelOption = "hybrid", kinds: KindsOption = None) -> None:
    """Fit a model on the store's interactions and save it (``recommend`` reuses it until the
    interactions change)."""
    for note in _fitted(ctx, model, comma_separated(kinds), True).notes:
        console.print(note)


@handles_p13n_errors(value_errors="")
def recsys(
    data: Annotated[Path, typer.Option(help="Dataset folder (e.g. MovieLens 100K).")],
    format: Annotated[
        str, typer.Option(help=f"Its loader: {one_of(loaders.names())}.")
    ] = "movielens",
    split: Annotated[str, typer.Option(help="temporal (leave-last-out) or random.")] = "temporal",
    cold_fraction: Annotated[
        float, typer.Option(help="Share of users cut to 1-5 training items (simulated cold start).")
    ] = 0.2,
    users: Annotated[
        int | None,
        typer.Option(help="Evaluate every cold-start user plus this many others (default: all)."),
    ] = None,
    llm: Annotated[bool, typer.Option(help="Include the LLM-augmented models.")] = True,
    rerank: Annotated[bool, typer.Option(help="Include the LLM re-ranker.")] = True,
    backend: Annotated[str | None, typer.Option(help="LLM backend.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split and samples.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Prompts per LLM batch.")] = 8,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path(".p13n/bench/recsys"),
    cache: Annotated[Path | None, typer.Option(help="LLM cache (default: OUT/llm-cache).")] = None,
) -> None:
    """Every recommender side by side on one split: one table, results.json and ndcg.png."""
    from p13n.benchmarks.recsys import RecsysConfig, run_recsys
    from p13n.benchmarks.recsys_report import write_outputs
    from p13n.config import load_settings

    config = RecsysConfig(
        data=data,
        format=format,
        split=split,  # pydantic validates the literal
        cold_fraction=cold_fraction,
        users=users,
        llm=llm,
        rerank=rerank,
        llm_config=llm_config(load_settings(), backend),
        seed=seed,
        batch_size=batch_size,
        out=out,
        cache=cache,
    )
    result = run_recsys(config, report=lambda line: console.print(f"[dim]{line}[/dim]"))
    paths = write_outputs(result, out)
    console.print(recsys_table(paths["json"]))
    console.print(f"results: {paths['json']}\nplot: {paths['plot']}")


def recsys_table(results: Path) -> Table:
    """The benchmark's table: one row per model, test figures for all and cold-start users."""
    import json

    payload = json.loads(results.read_text(encoding="utf-8"))
    summary = payload["summary"]
    table = Table(
        title=f"{payload['split']}: {payload['users']} users ({payload['cold_users']} cold-start)"
    )
    for header in (
        "model",
        "NDCG@10 [95% CI]",
        "cold NDCG@10",
        "warm NDCG@10",
        "HR@10",
        "cold HR@10",
        "MRR@10",
        "R@20",
        "P@5",
        "cov@10",
        "fit s",
    ):
        table.add_column(header, justify="left" if header == "model" else "right")
    for name, entry in summary["models"].items():
        everyone, cold, warm = entry["all"], entry.get("cold"), entry.get("warm")
        table.add_row(
            name,
            f"{everyone['ndcg@10']:.4f} [{everyone['ndcg@10_low']:.3f}, "
            f"{everyone['ndcg@10_high']:.3f}]",
            f"{cold['ndcg@10']:.4f}" if cold else "-",
            f"{warm['ndcg@10']:.4f}" if warm else "-",
            f"{everyone['hit_rate@10']:.4f}",
            f"{cold['hit_rate@10']:.4f}" if cold else "-",
            f"{everyone['mrr@10']:.4f}",
            f"{everyone['recall@20']:.4f}",
            f"{everyone['precision@5']:.4f}",
            f"{everyone['coverage@10']:.3f}",
            f"{entry['fit_seconds']:.1f}",
        )
    return table
