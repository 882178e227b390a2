"""``p13n adapt``: train, list and delete learned users (LoRA adapters, DPO adapters, the user
embedding projector); ``p13n feedback``: record a preference pair for DPO."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from p13n.adapt import methods
from p13n.cli.common import (
    command_settings,
    console,
    handles_p13n_errors,
    llm_config,
    one_of,
    progress_display,
    run_ingest,
    tenant_store,
)
from p13n.errors import ConfigError
from p13n.llm import LLMConfig

adapt_app = typer.Typer(help="Learned users: per-user LoRA, DPO adapters, user embeddings.")


def _users(store: Any, given: list[str]) -> list[str]:
    names = [name for value in given for name in value.split(",") if name]
    if names == ["all"]:
        return [user.id for user in store.all_users()]
    if not names:
        raise ConfigError("name the users to train: --users all, or --users ID (repeatable)")
    unknown = [name for name in names if store.data_version(name) is None]
    if unknown:
        raise ConfigError(f"unknown users in tenant {store.tenant!r}: {', '.join(unknown[:5])}")
    return names


@adapt_app.command()
@handles_p13n_errors
def train(
    ctx: typer.Context,
    method: Annotated[str, typer.Option(help=f"{one_of(methods.names())}.")] = "lora",
    users: Annotated[
        list[str] | None,
        typer.Option(help="'all', or user ids (repeat the option or separate with commas)."),
    ] = None,
    task: Annotated[str, typer.Option(help="Task template the examples are cast into.")] = "chat",
    persona: Annotated[
        str | None, typer.Option(help="Train this persona's adapter (members' data) instead.")
    ] = None,
    from_persona: Annotated[
        str | None, typer.Option(help="Start each user's adapter from this persona's adapter.")
    ] = None,
    workers: Annotated[int, typer.Option(help="Ray workers (one model copy each).")] = 1,
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster address.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs.")] = None,
    rank: Annotated[int | None, typer.Option(help="LoRA rank.")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="Learning rate.")] = None,
    max_examples: Annotated[
        int | None, typer.Option(help="LoRA: the user's newest documents trained on.")
    ] = None,
    min_examples: Annotated[
        int | None, typer.Option(help="LoRA: fewer usable documents are refused.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Retrain current adapters.")] = False,
    backend: Annotated[
        str | None,
        typer.Option(
            help="The backend the adapters serve on; training runs in torch on its model's "
            "weights (onnx: the folder it converts). Default: the settings' backend."
        ),
    ] = None,
    model: Annotated[str | None, typer.Option(help="hf, onnx: the model folder.")] = None,
    task_folder: Annotated[
        Path | None,
        typer.Option(
            help="finetune: fine-tune every weight on this LaMP-format task folder's train "
            "split (the task's own template), one model for all its users."
        ),
    ] = None,
) -> None:
    """Train adapters and register them in the store. Resumable: users whose adapter is current
    (same data, same settings) are skipped; each adapter is written in one transaction.
    ``--method finetune`` trains every weight (on a task folder's train split, or a persona's
    members' documents) into the cache, resuming a stopped run, and registers the model."""
    from p13n.adapt import DpoSettings, EmbeddingSettings, LoraSettings, base_model

    methods.check(method)
    settings = command_settings(ctx)
    llm = llm_config(settings, backend, model=model)
    base_model(llm, torch=False)  # a backend with no local weights is refused before any work
    store = tenant_store(settings)
    overrides: dict[str, Any] = {
        "epochs": epochs,
        "rank": rank,
        "learning_rate": learning_rate,
    }
    if method in ("lora", methods.STEERING_VECTOR, methods.FINETUNE):
        overrides |= {"max_examples": max_examples, "min_examples": min_examples}
    given = {k: v for k, v in overrides.items() if v is not None}
    if method == methods.FINETUNE:
        given.pop("rank", None)
        _finetune(store, llm, task, persona, task_folder, given)
        return
    if task_folder is not None:
        raise ConfigError("--task-folder is for --method finetune")
    if method == methods.STEERING_VECTOR:
        if persona is not None or from_persona is not None:
            raise ConfigError("a steering vector is the user's own: drop --persona/--from-persona")
        _train_vectors(store, llm, task, users or [], given, force)
        return
    if method == "lora":
        chosen: Any = LoraSettings(**given)
    elif method == "dpo":
        chosen = DpoSettings(**given)
    else:
        given.pop("rank", None)
        chosen = EmbeddingSettings(**given)
    if persona is not None and method == "embedding":
        raise ConfigError(
            "the embedding projector is the tenant's, not a persona's: drop --persona"
        )
    if persona is not None or method == "embedding":
        _train_in_process(store, llm, settings, method, task, persona, users or ["all"], chosen)
        return
    _train_batch(store, llm, settings, method, task, users or [], chosen, workers, ray_address,
                 from_persona, force)  # fmt: skip


def _finetune(
    store: Any,
    llm: LLMConfig,
    task: str,
    persona: str | None,
    folder: Path | None,
    given: dict[str, Any],
) -> None:
    """One fully fine-tuned model: the task's (from its folder's train split) or a persona's."""
    from p13n.adapt import base_model
    from p13n.adapt.finetune import FinetuneSettings
    from p13n.adapt.train import train_persona_finetune, train_task_finetune
    from p13n.datasets.lamp import read_split
    from p13n.prompt import task_template

    if (folder is None) == (persona is None):
        raise ConfigError("--method finetune trains on --task-folder DIR or on --persona ID")
    settings, base = FinetuneSettings(**given), base_model(llm, torch=False)
    with progress_display() as progress:
        bar = progress.add_task("fine-tuning every weight", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(bar, completed=done, total=total)

        if folder is not None:
            split = read_split(folder, "train")
            template = task_template(split.spec).name
            entry = train_task_finetune(
                store, split.examples, template, base, settings, progress=advance
            )
        else:
            assert persona is not None
            entry = train_persona_finetune(store, persona, task, base, settings, progress=advance)
    console.print(
        f"registered [bold]{escape(entry.adapter_id)}[/]: {entry.data_size} examples, "
        f"{entry.metrics['model_bytes'] / 1e6:.0f} MB in {escape(entry.config['path'])}, "
        f"trained in {entry.metrics['train_seconds']} s"
        + (" (built before: reused)" if entry.metrics.get("reused") else ""),
        highlight=False,
    )


def _train_vectors(
    store: Any, llm: LLMConfig, task: str, users: list[str], given: dict[str, Any], force: bool
) -> None:
    """Each user's steering vector, in this process on the model's torch weights; users
    whose vector is current are skipped, and a user with too little data is reported."""
    from p13n.adapt import base_model
    from p13n.adapt.adapters import find, is_current
    from p13n.adapt.steering import SteeringVectorSettings
    from p13n.adapt.train import train_user_steering_vector
    from p13n.errors import InsufficientDataError
    from p13n.llm.hf import HFLLM

    unknown = sorted(set(given) - {"max_examples", "min_examples"})
    if unknown:
        raise ConfigError(
            f"a steering vector is read, not trained: --{unknown[0].replace('_', '-')} does not "
            "apply (use --max-examples, --min-examples)"
        )
    chosen = SteeringVectorSettings(**given)
    base = base_model(llm, torch=False)
    model = HFLLM(base.path, model_name=base.name)
    names = _users(store, users)
    trained = current = 0
    failed: dict[str, str] = {}
    with progress_display() as progress:
        bar = progress.add_task("steering vectors", total=len(names))
        for user in names:
            entry = find(store, "user", user, task, methods.STEERING_VECTOR)
            if not force and is_current(entry, store.data_version(user) or "", chosen):
                current += 1
            else:
                try:
                    train_user_steering_vector(store, user, task, model, base, chosen)
                    trained += 1
                except InsufficientDataError as error:
                    failed[user] = str(error)
            progress.advance(bar)
    console.print(
        f"{trained} trained, {current} already current, {len(failed)} failed", highlight=False
    )
    for user, problem in failed.items():
        console.print(f"[yellow]{escape(user)}[/]: {escape(problem)}", highlight=False)
    if failed and not trained and not current:
        raise typer.Exit(code=1)


def _train_in_process(
    store: Any,
    llm: LLMConfig,
    settings: Any,
    method: str,
    task: str,
    persona: str | None,
    users: list[str],
    chosen: Any,
) -> None:
    from p13n.adapt import LoraTrainer, base_model
    from p13n.adapt.train import train_owner_dpo, train_persona_lora, train_projector
    from p13n.encode import get_encoder

    base = base_model(llm, torch=False)
    with progress_display() as progress:
        bar = progress.add_task(f"training {method}", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(bar, completed=done, total=total)

        if method == "embedding":
            entry = train_projector(
                store, _users(store, users), task, base, get_encoder(settings.encoder), chosen,
                progress=advance,
            )  # fmt: skip
        elif method == "lora":
            assert persona is not None
            trainer = LoraTrainer(base, chosen)
            entry = train_persona_lora(store, persona, task, trainer, progress=advance)
        else:
            assert persona is not None
            entry = train_owner_dpo(store, "persona", persona, task, base, chosen)
    console.print(
        f"registered [bold]{escape(entry.adapter_id)}[/]: {entry.data_size} examples, "
        f"{entry.size_bytes / 1e6:.2f} MB, {entry.metrics.get('train_seconds')} s",
        highlight=False,
    )


def _train_batch(
    store: Any,
    llm: LLMConfig,
    settings: Any,
    method: str,
    task: str,
    users: list[str],
    chosen: Any,
    workers: int,
    ray_address: str | None,
    from_persona: str | None,
    force: bool,
) -> None:
    from p13n.adapt.batch import train_users

    names = _users(store, users)
    with progress_display() as progress:
        bar = progress.add_task(f"training {method} adapters", total=len(names))
        report = train_users(
            settings.store,
            settings.tenant,
            names,
            method="lora" if method == "lora" else "dpo",
            task=task,
            settings=chosen,
            llm=llm,
            workers=workers,
            ray_address=ray_address,
            from_persona=from_persona,
            force=force,
            on_done=lambda user, outcome: progress.advance(bar),
        )
    console.print(
        f"{len(report.trained)} trained, {len(report.current)} already current, "
        f"{len(report.failed)} failed",
        highlight=False,
    )
    for user, problem in report.failed.items():
        console.print(f"[yellow]{escape(user)}[/]: {escape(problem)}", highlight=False)
    if report.failed and not report.trained and not report.current:
        raise typer.Exit(code=1)


@adapt_app.command("list")
@handles_p13n_errors
def list_adapters(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option(help="Only this user's adapters.")] = None,
    method: Annotated[str | None, typer.Option(help="Only this method's adapters.")] = None,
) -> None:
    """The adapter registry: owner, task, method, base model, data size, size, created."""
    entries = tenant_store(command_settings(ctx)).adapters(user_id=user, method=method)
    if not entries:
        console.print("[dim]no adapters: train some with `p13n adapt train`[/]")
        return
    console.print(f"[bold]{len(entries)} adapters[/]", highlight=False)
    for e in entries:  # one line each: ids stay whole in a narrow terminal
        console.print(
            f"[bold]{escape(e.adapter_id)}[/]  {e.method} · task {e.task} · {e.base_model} "
            f"({e.base_hash[:8]}) · {e.data_size} examples · "
            f"{e.metrics.get('model_bytes', e.size_bytes) / 1e6:.2f} MB · "
            f"{e.metrics.get('train_seconds', '?')} s · {e.created_at:%Y-%m-%d %H:%M}",
            highlight=False,
        )


@adapt_app.command()
@handles_p13n_errors
def delete(
    ctx: typer.Context,
    adapter_ids: Annotated[list[str], typer.Argument(help="Adapter ids (see `adapt list`).")],
) -> None:
    """Delete adapters from the registry."""
    deleted = tenant_store(command_settings(ctx)).delete_adapters(adapter_ids)
    console.print(f"deleted {deleted} adapters", highlight=False)


@handles_p13n_errors(value_errors="")
def feedback(
    ctx: typer.Context,
    prompt: Annotated[str, typer.Option(help="What was asked.")],
    chosen: Annotated[str, typer.Option(help="The answer preferred.")],
    rejected: Annotated[str, typer.Option(help="The answer not preferred.")],
    user: Annotated[str | None, typer.Option(help="Whose preference it is.")] = None,
    persona: Annotated[str | None, typer.Option(help="Or: the persona's preference.")] = None,
) -> None:
    """Record a preference pair (for `p13n adapt train --method dpo`)."""
    from p13n.data import Preference
    from p13n.datasets import Sourced

    if (user is None) == (persona is None):
        raise ConfigError("give exactly one of --user or --persona")
    settings = command_settings(ctx)
    store = tenant_store(settings)
    if user is not None and store.data_version(user) is None:
        raise ConfigError(
            f"unknown user {user!r} in tenant {store.tenant!r}: ingest the user first"
        )
    record = Preference(
        user_id=user, persona_id=persona, prompt=prompt, chosen=chosen, rejected=rejected
    )
    run_ingest(store, [Sourced(record, "feedback")], settings)
    owner = f"user {user}" if user else f"persona {persona}"
    pairs = len(store.preferences(user) if user else store.persona_preferences(persona or ""))
    console.print(f"recorded; {owner} has {pairs} preference pairs", highlight=False)
