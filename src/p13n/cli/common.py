"""What every CLI leaf shares: the consoles, error reporting, settings and store, progress bars,
the options of a personalized call and the config builders behind them, and a few printers.

Leaves import this module and nothing else from ``p13n.cli``."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Annotated, ParamSpec, TypeVar, overload

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from p13n.config import Settings, load_settings
from p13n.datasets import Sourced
from p13n.errors import ConfigError, P13nError
from p13n.ingest import IngestReport, ingest
from p13n.llm import GenerationOptions, LLMConfig, backends
from p13n.personalize import PersonalizerConfig
from p13n.personalize.router import GranularityConfig
from p13n.prompt.builders import builders
from p13n.prompt.templates import templates
from p13n.retrieve import RetrieverConfig, query_generators, retrievers
from p13n.store import Store, open_store

P = ParamSpec("P")
R = TypeVar("R")

console = Console()
stderr = Console(stderr=True)
"""Errors and progress bars go here, so stdout carries only results."""


def one_of(names: Iterable[str]) -> str:
    """``"a, b or c"``: choices for a help text, read from their registry."""
    listed = list(names)
    return listed[0] if len(listed) == 1 else f"{', '.join(listed[:-1])} or {listed[-1]}"


# --- errors ---------------------------------------------------------------------------------


def fail(error: P13nError) -> typer.Exit:
    """Print ``error`` on stderr; the ``typer.Exit(1)`` to raise."""
    # Escaped: messages quote user input and pydantic's "[type=..., input_value=...]" details.
    stderr.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
    return typer.Exit(code=1)


@overload
def handles_p13n_errors(command: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def handles_p13n_errors(
    *, value_errors: str | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def handles_p13n_errors(
    command: Callable[P, R] | None = None, /, *, value_errors: str | None = None
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """A command that reports a ``P13nError`` as ``error: <message>`` on stderr, with exit code 1,
    instead of a traceback. ``value_errors`` (a prefix, possibly empty) reports a ``ValueError``
    the same way: pydantic's validation errors name the field and the bad value."""

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)  # Typer reads the command's signature through __wrapped__
        def command(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return function(*args, **kwargs)
            except P13nError as error:
                raise fail(error) from None
            except ValueError as error:
                if value_errors is None:
                    raise
                raise fail(P13nError(f"{value_errors}{error}")) from None

        return command

    return decorate if command is None else decorate(command)


# --- settings and store ---------------------------------------------------------------------


def command_settings(ctx: typer.Context, **overrides: object) -> Settings:
    """The settings a command runs with: the config file, ``P13N_*`` variables, the root's
    ``--store``/``--tenant``/``--config`` and the command's own ``overrides``."""
    return load_settings(
        ctx.obj["config"], store=ctx.obj["store"], tenant=ctx.obj["tenant"], **overrides
    )


def tenant_store(settings: Settings) -> Store:
    """The settings' store, opened on their tenant."""
    return open_store(settings.store, tenant=settings.tenant)


# --- progress and ingest --------------------------------------------------------------------


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
    with progress_display(stderr) as progress:
        task = progress.add_task("reading", total=None)

        def counted(items: Iterable[Sourced]) -> Iterator[Sourced]:
            for n, item in enumerate(items, start=1):
                if n % 1000 == 0:
                    progress.update(task, completed=n)
                yield item

        def on_progress(stage: str, done: int, total: int) -> None:
            progress.update(task, description="embedding", completed=done, total=total)

        return ingest(store, counted(records), encoder=encoder, progress=on_progress)


def print_report(report: IngestReport) -> None:
    """What an ingest added, updated and left unchanged, per record type."""
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


# --- text -----------------------------------------------------------------------------------


def comma_separated(value: str | None) -> list[str] | None:
    """``"a, b,,c"`` as ``["a", "b", "c"]``; None stays None (the option was not given)."""
    return None if value is None else [part.strip() for part in value.split(",") if part.strip()]


def excerpt(text: str, width: int = 90) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _attributes(attributes: Mapping[str, object], width: int = 60) -> str:
    text = ", ".join(f"{k}={v}" for k, v in attributes.items())
    return text if len(text) <= width else text[: width - 1] + "…"


# --- users and personas ---------------------------------------------------------------------


def show_users(store: Store, limit: int) -> None:
    """The tenant's users with their counts, ``limit`` rows at most."""
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


def print_membership(store: Store, settings: Settings, user_id: str) -> None:
    """The user's personas, and the level the configured router would serve them at."""
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
            f"{len(persona.persona.members)} members): {excerpt(persona.description, 160)}",
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


# --- the options of a personalized call, and the configs they build -------------------------

TaskOption = Annotated[str, typer.Option(help=f"Task template: {one_of(templates.names())}.")]
RetrieverOption = Annotated[str, typer.Option(help=f"{one_of(retrievers.names())}.")]
KOption = Annotated[int, typer.Option("--k", "-k", help="Items of the user's data to retrieve.")]
PromptOption = Annotated[str, typer.Option(help=f"Prompt builder: {one_of(builders.names())}.")]
QueryOption = Annotated[
    str, typer.Option(help=f"Query generator: {one_of(query_generators.names())}.")
]
BackendOption = Annotated[
    str | None,
    typer.Option(help=f"LLM backend: {one_of(backends.names())} (default: the settings', onnx)."),
]
ModelOption = Annotated[
    str | None,
    typer.Option(
        help="openai: the model name the server serves; hf, onnx: a local transformers model "
        "directory."
    ),
]
BaseUrlOption = Annotated[
    str | None,
    typer.Option(
        help="openai: the server's base URL (vLLM, Ollama at http://127.0.0.1:11434/v1, any "
        "OpenAI-compatible server)."
    ),
]
ApiKeyEnvOption = Annotated[
    str | None,
    typer.Option(help="openai: the environment variable holding the API key (OPENAI_API_KEY)."),
]
TokensOption = Annotated[int, typer.Option(help="Longest answer, in tokens.")]
MinScoreOption = Annotated[
    float | None, typer.Option(help="Quote only items scoring above this (a dense cosine, say).")
]
MatchOption = Annotated[
    bool,
    typer.Option(
        help="Quote only items sharing a word with the input (sparse retrievers); "
        "--no-require-match quotes the top k whatever they share."
    ),
]
ItemTokensOption = Annotated[
    int, typer.Option(help="Cut each retrieved item's text to this many tokens.")
]


LOCAL_MODEL_BACKENDS = ("hf", "onnx")  # --model names a local directory for these


def llm_config(
    settings: Settings,
    backend: str | None,
    *,
    model: str | None = None,
    base_url: str | None = None,
    api_key_env: str | None = None,
) -> LLMConfig:
    """The LLM the settings name; the flags (``--backend``, ``--model``, ``--base-url``,
    ``--api-key-env``) override theirs."""
    backend = backend or settings.llm_backend
    path, served = settings.llm_path, settings.llm_model
    if model is not None:
        if backend in LOCAL_MODEL_BACKENDS:
            path = model
        elif backend == "openai":
            served = model
        else:
            raise ConfigError(
                f"--model names the model of backend hf, onnx or openai; {backend!r} runs its "
                "own model"
            )
    extra: dict[str, str] = {"api_key_env": api_key_env} if api_key_env else {}
    try:
        return LLMConfig(
            backend=backend,
            model=served,
            path=path,
            precision=settings.llm_precision,
            base_url=base_url or settings.llm_base_url,
            **extra,
        )
    except ValueError as error:  # pydantic's message names the field and the bad value
        raise ConfigError(str(error)) from None


def personalizer_config(
    settings: Settings,
    *,
    task: str,
    retriever: str,
    k: int,
    prompt: str,
    query: str,
    backend: str | None,
    max_new_tokens: int,
    max_item_tokens: int = 256,
    level: str | None = None,
    adapter: str = "none",
    model: str | None = None,
    base_url: str | None = None,
    api_key_env: str | None = None,
    min_score: float | None = None,
    require_match: bool = True,
    policy: str = "fixed",
    decoding: str = "standard",
    steering: float = 1.0,
) -> PersonalizerConfig:
    """The ``Personalizer`` a command's options describe, on the settings' LLM and router."""
    try:
        return PersonalizerConfig(
            granularity=granularity_config(settings, level),
            task=task,
            query=query,
            prompt=prompt,
            retriever=RetrieverConfig(
                name=retriever, k=k, min_score=min_score, require_match=require_match
            ),
            llm=llm_config(
                settings, backend, model=model, base_url=base_url, api_key_env=api_key_env
            ),
            generation=GenerationOptions(max_new_tokens=max_new_tokens),
            max_item_tokens=max_item_tokens,
            encoder=settings.encoder,
            adapter=adapter,
            policy=policy,  # validated here
            decoding=decoding,
            steering=steering,
        )
    except ValueError as error:  # pydantic's message names the field and the bad value
        raise ConfigError(str(error)) from None


def granularity_config(settings: Settings, level: str | None = None) -> GranularityConfig:
    """The router's settings; ``level`` (a flag) overrides the configured one."""
    try:
        return GranularityConfig(
            level=level or settings.level,  # validated here
            persona_min_items=settings.persona_min_items,
            user_min_items=settings.user_min_items,
            blend=settings.blend,
            collaborative_members=settings.collaborative_members,
            global_instruction=settings.global_instruction,
        )
    except ValueError as error:
        raise ConfigError(str(error)) from None
