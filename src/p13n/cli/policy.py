"""``p13n policy``: the tenant's learned personalization policies (learned by ``p13n bench run``
with method ``auto``; served by a Personalizer with ``policy = "auto"``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from p13n.cli.common import command_settings, console, handles_p13n_errors, tenant_store
from p13n.errors import ConfigError
from p13n.personalize.policy import read_policy, save_policy

policy_app = typer.Typer(help="Learned personalization policies, one per task.")


@policy_app.command("list")
@handles_p13n_errors
def list_policies(ctx: typer.Context) -> None:
    """Every task's policy: what it serves and its dev evidence."""
    store = tenant_store(command_settings(ctx))
    stored = store.policies()
    if not stored:
        console.print(
            f"[dim]no policies in tenant {store.tenant!r}: learn one with `p13n bench run` "
            "(method auto), then `p13n policy set`[/]"
        )
        return
    table = Table(title=f"policies of tenant {store.tenant!r}", title_justify="left")
    for column in ("task", "serves", "dev metric", "chosen", "none", "best", "n", "learned"):
        table.add_column(column, no_wrap=column in ("task", "serves"))
    for entry in stored:
        policy = read_policy(entry.policy, f"stored policy of task {entry.task!r}")
        summary = policy.summary()
        fallback = policy.fallback
        table.add_row(
            policy.task,
            policy.choice + (f" (else {fallback.choice})" if fallback else ""),
            summary["metric"],
            f"{summary['dev_value']:.4f}",
            f"{summary['dev_baseline']['value']:.4f}",
            summary["best"],
            str(summary["dev_examples"]),
            f"{policy.learned_at:%Y-%m-%d %H:%M}",
        )
    console.print(table)


@policy_app.command("set")
@handles_p13n_errors
def set_policy(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="A policy file (bench output policy-TASK.json).")],
) -> None:
    """Serve a learned policy for its task in this tenant (replacing the task's policy)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such policy file") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}: not valid JSON ({error})") from None
    policy = read_policy(raw, str(path))
    store = tenant_store(command_settings(ctx))
    save_policy(store, policy)
    fallback = policy.fallback
    otherwise = (
        f"; users without a {policy.adapter} adapter get {fallback.choice!r}" if fallback else ""
    )
    console.print(
        f"tenant {store.tenant!r} serves {policy.choice!r} for task {policy.task!r} "
        f"(learned on {policy.evidence.examples} {policy.evidence.split} examples)" + otherwise,
        highlight=False,
    )


@policy_app.command("delete")
@handles_p13n_errors
def delete_policy(
    ctx: typer.Context, task: Annotated[str, typer.Argument(help="Task template, e.g. lamp4.")]
) -> None:
    """Stop serving the task's policy (auto then serves the configured settings)."""
    store = tenant_store(command_settings(ctx))
    if not store.delete_policy(task):
        raise ConfigError(f"tenant {store.tenant!r} has no policy for task {task!r}")
    console.print(f"deleted the policy of task {task!r}", highlight=False)
