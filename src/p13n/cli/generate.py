"""CLI commands that generate: ``generate``, ``chat``, ``serve-llm`` and ``demo``."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from importlib import resources
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from p13n.adapt import methods
from p13n.cli.common import (
    ApiKeyEnvOption,
    BackendOption,
    BaseUrlOption,
    ItemTokensOption,
    KOption,
    MatchOption,
    MinScoreOption,
    ModelOption,
    PromptOption,
    QueryOption,
    RetrieverOption,
    TaskOption,
    TokensOption,
    command_settings,
    console,
    excerpt,
    handles_p13n_errors,
    llm_config,
    one_of,
    personalizer_config,
    print_personas,
    print_report,
    run_ingest,
    show_users,
    tenant_store,
)
from p13n.config import Settings
from p13n.errors import ConfigError, UnknownUserError
from p13n.personalize import Generation, Personalizer
from p13n.store import Store


def parse_attributes(values: list[str] | None) -> dict[str, str]:
    """``KEY=VALUE`` flags as a mapping; a malformed one is a ``ConfigError`` naming it."""
    parsed: dict[str, str] = {}
    for value in values or []:
        key, sep, text = value.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--attr {value!r}: expected KEY=VALUE")
        parsed[key.strip()] = text.strip()
    return parsed


def print_retrieved(generation: Generation) -> None:
    """The items the answer was given, with their scores."""
    retrieved = generation.trace.retrieved
    if retrieved is None or not retrieved.items:
        console.print("[dim]nothing retrieved[/]")
        return
    table = Table(
        title=f"retrieved by {retrieved.retriever} for query {excerpt(retrieved.query, 60)!r}",
        title_justify="left",
    )
    for column in ("#", "score", "source", "kind", "text", "id"):
        table.add_column(column, justify="right" if column in ("#", "score") else "left")
    for rank, item in enumerate(retrieved.items, start=1):
        text = f"{item.title}: {item.text}" if item.title else item.text
        table.add_row(
            str(rank), f"{item.score:.3f}", item.source, item.kind, excerpt(text), item.id[:12]
        )
    console.print(table)


def policy_line(policy: dict[str, Any]) -> str:
    """How a learned policy chose the settings, in one line."""
    if not policy["learned"]:
        return f"policy auto: {policy['served']}"
    baseline = policy["dev_baseline"]
    return (
        f"policy auto chose {policy['choice']} for {policy['task']}: dev {policy['metric']} "
        f"{policy['dev_value']:.4f} against {baseline['value']:.4f} for {baseline['label']} "
        f"(n={policy['dev_examples']})"
    )


def refined_line(refined: dict[str, Any]) -> str:
    """What the trace says of a refined instruction: its advice and level, or why none."""
    if refined.get("advice") is None:
        return f"task instruction unrefined: {refined['reason']}"
    when = "refined now" if refined["refreshed"] else "stored"
    advice = refined["advice"] or "(the task's own instruction scored best)"
    return (
        f"{refined['level']}-level refined instruction ({when}; held-in score "
        f"{refined['start_score']:.3f} → {refined['score']:.3f}, {refined['llm_calls']} of at "
        f"most {refined['max_calls']} LLM calls): {advice}"
    )


def print_trace(generation: Generation) -> None:
    """One dim line of how the answer was made: level, adapter, model, prompt, timings."""
    trace, t = generation.trace, generation.trace.timings
    prompt = trace.prompt
    if trace.granularity is not None:
        console.print(
            f"[dim]served at {trace.granularity.level} level: {trace.granularity.reason}[/]",
            highlight=False,
        )
    if trace.abstained is not None:
        console.print(f"[dim]not personalized: {escape(trace.abstained)}[/]", highlight=False)
    if trace.policy is not None:
        console.print(f"[dim]{escape(policy_line(trace.policy))}[/]", highlight=False)
    if trace.decoding is not None:
        console.print(
            f"[dim]decoded with {trace.decoding['method']} at strength "
            f"{trace.decoding['strength']:g}[/]",
            highlight=False,
        )
    if trace.refined is not None:
        console.print(f"[dim]{escape(refined_line(trace.refined))}[/]", highlight=False)
    if trace.adapter is not None:
        console.print(
            f"[dim]adapter {escape(trace.adapter['adapter_id'])} "
            f"({trace.adapter['weights_sha256'][:12]}), "
            f"swapped in {trace.adapter['swap_ms']} ms[/]",
            highlight=False,
        )
    console.print(
        f"[dim]{trace.backend}:{trace.model} · builder {prompt.builder} · task {trace.task} · "
        f"prompt {trace.prompt_tokens} tokens (budget {prompt.budget}, {len(prompt.items)} items "
        f"in, {prompt.dropped} dropped) · answer {trace.completion_tokens} tokens · "
        f"query {t.query_ms:.1f} ms, retrieval {t.retrieve_ms:.1f} ms, prompt {t.prompt_ms:.1f} "
        f"ms, generation {t.generate_ms:.0f} ms[/]"
    )


def print_comparison(user: str, baseline: Generation, personalized: Generation) -> None:
    """The two answers side by side, then what the personalized one used."""
    table = Table(title=f"user {user}", title_justify="left", show_lines=True)
    table.add_column("non-personalized", ratio=1)
    table.add_column(f"personalized ({personalized.trace.prompt.builder})", ratio=1)
    table.add_row(baseline.text, personalized.text)
    console.print(table)
    print_retrieved(personalized)
    print_trace(personalized)


@handles_p13n_errors
def generate(
    ctx: typer.Context,
    text: Annotated[str, typer.Argument(help="The input x.")],
    user: Annotated[str, typer.Option("--user", "-u", help="User id.")],
    task: TaskOption = "chat",
    retriever: RetrieverOption = "bm25",
    k: KOption = 4,
    prompt: PromptOption = "contextual",
    query: QueryOption = "identity",
    backend: BackendOption = None,
    model: ModelOption = None,
    base_url: BaseUrlOption = None,
    api_key_env: ApiKeyEnvOption = None,
    max_new_tokens: TokensOption = 128,
    max_item_tokens: ItemTokensOption = 256,
    min_score: MinScoreOption = None,
    require_match: MatchOption = True,
    decoding: Annotated[
        str,
        typer.Option(
            help="standard; context-steering: each token steered away from the prompt without "
            "the user's data (local backends); adapter-contrast: the user's LoRA adapter "
            "against the base model (CoPe; --adapter lora); steering-vector: the user's "
            "steering vector (--adapter steering-vector)."
        ),
    ] = "standard",
    steering: Annotated[
        float, typer.Option(help="The decoding method's strength: CoS λ, CoPe β, StyleVector α.")
    ] = 1.0,
    policy: Annotated[
        str,
        typer.Option(
            help="auto: the task's learned policy (`p13n policy list`) chooses prompt, retriever "
            "and k in place of those options; fixed: the options do."
        ),
    ] = "fixed",
    compare: Annotated[
        bool, typer.Option("--compare", help="Also answer without personalization, side by side.")
    ] = False,
    personalize: Annotated[
        bool, typer.Option(help="--no-personalize gives the baseline (same model and template).")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result(s) as JSON.")] = False,
    show_prompt: Annotated[bool, typer.Option(help="Print the exact prompt.")] = False,
    level: Annotated[
        str | None,
        typer.Option(
            help="auto (the router: user, persona or global by data), user, persona, "
            "global. Default: the configured level (auto)."
        ),
    ] = None,
    attr: Annotated[
        list[str] | None,
        typer.Option(
            "--attr",
            help="KEY=VALUE attribute of the request (repeatable): places "
            "a user without data in a declared persona.",
        ),
    ] = None,
    adapter: Annotated[
        str,
        typer.Option(
            help=f"{one_of(methods.names(none=True))}: answer with the user's learned adapter "
            "(see `p13n adapt train`); with --prompt none, the adapter alone."
        ),
    ] = "none",
    labels: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated answers to choose among by likelihood (label and rating "
            "tasks, e.g. 1,2,3,4,5), read as the policy says (calibrated, fused with the "
            "user's label history), instead of generating."
        ),
    ] = None,
) -> None:
    """Answer TEXT for a user, personalized with their own data, with its trace."""
    settings = command_settings(ctx)
    config = personalizer_config(
        settings,
        task=task,
        retriever=retriever,
        k=k,
        prompt=prompt,
        query=query,
        backend=backend,
        model=model,
        base_url=base_url,
        api_key_env=api_key_env,
        max_new_tokens=max_new_tokens,
        max_item_tokens=max_item_tokens,
        level=level,
        adapter=adapter,
        min_score=min_score,
        require_match=require_match,
        policy=policy,
        decoding=decoding,
        steering=steering,
    )
    attributes = parse_attributes(attr)
    personalizer = Personalizer(tenant_store(settings), config)
    if labels is not None:
        if compare:
            raise ConfigError("--labels chooses one answer: drop --compare")
        _print_choice(personalizer, user, text, labels, personalize, attributes, as_json)
        return
    if compare:
        baseline, personalized = personalizer.compare(user, text, attributes=attributes)
        if as_json:
            console.print_json(
                json.dumps({"baseline": baseline.to_dict(), "personalized": personalized.to_dict()})
            )
            return
        print_comparison(user, baseline, personalized)
        result = personalized
    else:
        result = personalizer.generate(user, text, personalize=personalize, attributes=attributes)
        if as_json:
            console.print_json(json.dumps(result.to_dict()))
            return
        console.print(result.text, highlight=False, markup=False)
        print_retrieved(result)
        print_trace(result)
    if show_prompt:
        console.rule("prompt")
        console.print(result.trace.prompt.text(), highlight=False, markup=False)


def _print_choice(
    personalizer: Personalizer,
    user: str,
    text: str,
    labels: str,
    personalize: bool,
    attributes: dict[str, str] | None,
    as_json: bool,
) -> None:
    names = [label.strip() for label in labels.split(",") if label.strip()]
    chosen = personalizer.choose(user, text, names, personalize=personalize, attributes=attributes)
    if as_json:
        infinite = [None if math.isinf(v) else v for v in chosen.log_probs]
        plain = {"label": chosen.label, "log_probs": infinite, "scores": chosen.scores}
        console.print_json(json.dumps({**plain, "trace": chosen.trace.to_dict()}))
        return
    console.print(chosen.label, highlight=False, markup=False)
    console.print(
        "[dim]"
        + ", ".join(
            f"{escape(name)} {math.exp(v):.2f}"
            for name, v in zip(names, chosen.log_probs, strict=True)
        )
        + "[/]",
        highlight=False,
    )
    print_trace(Generation(chosen.label, chosen.trace))


def store_chat_turn(store: Store, settings: Settings, user: str, said: str, answer: str) -> None:
    """Keep what the user said as their own document (the answer rides along as metadata), so
    the next turn can retrieve it."""
    from p13n.data import Document
    from p13n.datasets import Sourced
    from p13n.encode import get_encoder
    from p13n.ingest import ingest

    turn = Document(
        user_id=user,
        kind="chat",
        text=said,
        timestamp=datetime.now(UTC),
        metadata={"reply": answer},
    )
    encoder = get_encoder(settings.encoder) if settings.embed else None
    ingest(store, [Sourced(turn, "chat")], encoder=encoder)


@handles_p13n_errors
def chat(
    ctx: typer.Context,
    user: Annotated[str, typer.Option("--user", "-u", help="User id.")],
    retriever: RetrieverOption = "bm25",
    k: KOption = 4,
    prompt: PromptOption = "contextual",
    backend: BackendOption = None,
    model: ModelOption = None,
    base_url: BaseUrlOption = None,
    api_key_env: ApiKeyEnvOption = None,
    max_new_tokens: TokensOption = 192,
    show_retrieved: Annotated[bool, typer.Option(help="Show what each answer used.")] = False,
) -> None:
    """Chat as a user; each turn is stored as their data, so later turns are personalized by the
    conversation so far. An empty line or Ctrl-D ends the chat."""
    settings = command_settings(ctx)
    store = tenant_store(settings)
    config = personalizer_config(
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
    personalizer = Personalizer(store, config)
    if store.data_version(user) is None:
        raise UnknownUserError(user, store.tenant)
    console.print(f"[dim]chatting as {user}; an empty line ends[/]")
    while True:
        try:
            said = console.input("[bold]you>[/] ").strip()
        except EOFError:
            break
        if not said:
            break
        answer = personalizer.generate(user, said)
        console.print(f"[bold]p13n>[/] {answer.text}", highlight=False)
        if show_retrieved:
            print_retrieved(answer)
        store_chat_turn(store, settings, user, said, answer.text)


@handles_p13n_errors
def serve_llm(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    backend: BackendOption = None,
    model: ModelOption = None,
    base_url: BaseUrlOption = None,
    api_key_env: ApiKeyEnvOption = None,
) -> None:
    """Serve an LLM backend (the embedded model on onnx int4 by default) as an OpenAI-compatible
    API."""
    import uvicorn

    from p13n.llm import get_llm
    from p13n.server.llm_api import create_llm_app

    llm = get_llm(
        llm_config(
            command_settings(ctx), backend, model=model, base_url=base_url, api_key_env=api_key_env
        )
    )
    console.print(f"serving {llm.model} at http://{host}:{port}/v1")
    uvicorn.run(create_llm_app(llm), host=host, port=port, log_level="warning")


DEMO_USERS = ("ada", "bruno", "chloe")
DEMO_INPUT = "Recommend one film for tonight and say why in two sentences."


@handles_p13n_errors
def demo(
    ctx: typer.Context,
    generate: Annotated[
        bool, typer.Option(help="Also answer one input for demo users, with and without p13n.")
    ] = True,
    max_new_tokens: TokensOption = 64,
    backend: BackendOption = None,
    model: ModelOption = None,
    base_url: BaseUrlOption = None,
    api_key_env: ApiKeyEnvOption = None,
) -> None:
    """Ingest the bundled demo users (written for p13n), show them, and answer the same input
    for several of them with and without personalization, with the trace."""
    from p13n.datasets import load_jsonl

    settings = command_settings(ctx)
    store = tenant_store(settings)
    with resources.as_file(resources.files("p13n.demo") / "demo.jsonl") as path:
        report = run_ingest(store, load_jsonl(path), settings)
    print_report(report)
    show_users(store, limit=20)
    if not generate:
        return
    config = personalizer_config(
        settings,
        task="chat",
        retriever="hybrid",
        k=3,
        prompt="contextual",
        query="identity",
        backend=backend,
        max_new_tokens=max_new_tokens,
        model=model,
        base_url=base_url,
        api_key_env=api_key_env,
    )
    with console.status("loading the model (the first run prepares it: ~30 s)"):
        personalizer = Personalizer(store, config)
    console.rule(f"the same input for {len(DEMO_USERS)} users: {DEMO_INPUT!r}")
    for user in DEMO_USERS:
        baseline, personalized = personalizer.compare(user, DEMO_INPUT)
        print_comparison(user, baseline, personalized)
    _demo_granularity(store, settings, personalizer)


def _demo_granularity(store: Store, settings: Settings, personalizer: Personalizer) -> None:
    """Discover personas, then serve a user the store has never seen: the router's global level."""
    from p13n.encode import get_encoder
    from p13n.personalize.personas import DiscoveryConfig, discover_personas

    console.rule("personas discovered from the demo users (p13n personas discover)")
    with console.status("clustering users and describing each group with the LLM"):
        discover_personas(
            store, get_encoder(settings.encoder), personalizer.llm, DiscoveryConfig(seed=0)
        )
    print_personas(store)
    console.rule(f"a user the store has never seen: {DEMO_INPUT!r}")
    newcomer = personalizer.generate("newcomer", DEMO_INPUT)
    console.print(newcomer.text, highlight=False, markup=False)
    print_trace(newcomer)
