"""The root of the ``p13n`` command line: its options, and every command and group wired in from
the leaf modules (a leaf imports only ``p13n.cli.common``, never this module or another leaf)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from p13n.cli import (
    adapt,
    bench,
    data,
    generate,
    indirect,
    personas,
    policy,
    recommend,
    serve,
    tasks,
)

app = typer.Typer(
    help="Personalize any LLM with a user's own data.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def main(
    ctx: typer.Context,
    store: Annotated[str | None, typer.Option(help="Store URL (env P13N_STORE).")] = None,
    tenant: Annotated[str | None, typer.Option(help="Tenant (env P13N_TENANT).")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML config file (env P13N_CONFIG).")] = None,
) -> None:
    """Options given here apply to every command."""
    ctx.obj = {"config": config, "store": store, "tenant": tenant}


bench_app = typer.Typer(help="Benchmarks: personalized methods against the baseline.")
bench_app.command("run")(bench.run)
bench_app.command("coldstart")(bench.coldstart)
bench_app.command("indirect")(indirect.indirect)
bench_app.command("recsys")(recommend.recsys)
bench_app.command("bias")(bench.bias)

# The order here is the order of `p13n --help`: commands first, then groups.
app.command("ingest")(data.ingest_command)
app.command("users")(data.users)
app.command("show")(data.show)
app.command("forget")(data.forget)
app.command("vacuum")(data.vacuum)
app.command("migrate")(data.migrate)
app.command("feedback")(adapt.feedback)
app.command("generate")(generate.generate)
app.command("chat")(generate.chat)
app.command("serve-llm")(generate.serve_llm)
app.command("demo")(generate.demo)
app.command("serve")(serve.serve)
app.add_typer(adapt.adapt_app, name="adapt")
app.add_typer(bench_app, name="bench")
app.add_typer(personas.personas_app, name="personas")
app.add_typer(policy.policy_app, name="policy")
app.add_typer(recommend.recommend_app, name="recommend")
app.add_typer(serve.tenants_app, name="tenants")
app.add_typer(tasks.tasks_app, name="tasks")
