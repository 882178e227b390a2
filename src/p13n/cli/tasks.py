"""``p13n tasks``: list, build and rebuild the benchmark tasks (LaMP format) from corpora, and
write a ``task.toml`` for a folder of one's own (``init``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from p13n.cli.common import console, handles_p13n_errors, stderr
from p13n.datasets.lamp import SPLITS
from p13n.datasets.task_file import TASK_FILE, read_task_file
from p13n.datasets.task_init import write_task_file
from p13n.datasets.tasks import (
    BuiltTask,
    Recipe,
    TaskBuildError,
    rebuild_task,
    shipped_tasks,
    write_task,
)
from p13n.errors import P13nError
from p13n.prompt import templates

tasks_app = typer.Typer(
    help="Benchmark tasks in the LaMP format, built from per-user corpora.", no_args_is_help=True
)

DataOption = Annotated[
    Path, typer.Option(help="Data root holding the corpora (e.g. ../shared/data).")
]


@tasks_app.command("list")
def list_tasks() -> None:
    """The shipped tasks."""
    wide = console.width >= 110  # else the descriptions follow the table, unwrapped
    table = Table(title="shipped tasks", title_justify="left")
    for column in ("name", "source", "template", "output", "split", "description"):
        if column != "description" or wide:
            table.add_column(column, no_wrap=column != "description")
    for name in shipped_tasks:
        recipe = shipped_tasks.get(name)
        kinds: tuple[str, str, str] = ("-", "pairs", "-")
        if isinstance(recipe, Recipe):
            kinds = (recipe.spec.template, recipe.spec.output_kind, recipe.split)
        table.add_row(name, recipe.loader, *kinds, *([recipe.description] if wide else []))
    console.print(table)
    if not wide:
        for name in shipped_tasks:
            console.print(f"[bold]{name}[/]: {shipped_tasks.get(name).description}")


def _counts_table(built: Sequence[BuiltTask]) -> Table:
    table = Table(title="built tasks", title_justify="left")
    for column in ("task", *SPLITS, "pairs", "seconds", "folder"):
        table.add_column(column, justify="left" if column in ("task", "folder") else "right")
    for task in built:
        counts = [str(task.counts[c]) if c in task.counts else "-" for c in (*SPLITS, "pairs")]
        table.add_row(task.name, *counts, f"{task.seconds:.1f}", str(task.folder))
    return table


@tasks_app.command("build")
@handles_p13n_errors
def build(
    names: Annotated[
        list[str] | None, typer.Argument(help="Tasks to build (default: every shipped task).")
    ] = None,
    data: DataOption = Path("../shared/data"),
    out: Annotated[Path, typer.Option(help="Folder of task folders.")] = Path("tasks"),
) -> None:
    """Build shipped tasks into OUT/<name>/: recipe.json and {train,dev,test} files."""
    recipes = [shipped_tasks.get(name) for name in (names or shipped_tasks.names())]
    if any(r.root == "data" for r in recipes) and not data.is_dir():
        raise TaskBuildError(
            f"data folder {data} does not exist: pass --data with the folder holding the "
            "corpora (e.g. ../shared/data)"
        )
    built: list[BuiltTask] = []
    failed = 0
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
    ) as progress:
        bar = progress.add_task("building", total=len(recipes))
        for recipe in recipes:
            progress.update(bar, description=f"building {recipe.name}")
            try:
                built.append(
                    write_task(recipe, data, out / recipe.name, templates=templates.names())
                )
            except P13nError as error:
                failed += 1
                stderr.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
            progress.advance(bar)
    if built:
        console.print(_counts_table(built))
    if failed:
        raise typer.Exit(code=1)


@tasks_app.command("rebuild")
@handles_p13n_errors
def rebuild(
    folder: Annotated[Path, typer.Argument(help="A built task folder (holding recipe.json).")],
    data: DataOption = Path("../shared/data"),
    out: Annotated[Path | None, typer.Option(help="Write here instead of into FOLDER.")] = None,
) -> None:
    """Build a task again from its recipe.json; refused if its sources changed."""
    console.print(_counts_table([rebuild_task(folder, data, out, templates=templates.names())]))


@tasks_app.command("init")
@handles_p13n_errors
def init(
    folder: Annotated[
        Path, typer.Argument(help="A folder of {split}_questions.json and {split}_outputs.json.")
    ],
    force: Annotated[bool, typer.Option(help="Write over an existing task.toml.")] = False,
) -> None:
    """Write FOLDER/task.toml, guessed from the folder's own examples, for `p13n bench run
    --tasks-dir PARENT --task NAME`; every guess is commented in the file."""
    from p13n.benchmarks.scoring import task_file_names
    from p13n.evaluate.metrics import DEFAULT_METRICS

    draft = write_task_file(folder, DEFAULT_METRICS, force=force)
    spec = read_task_file(folder / TASK_FILE, **task_file_names())
    console.print(f"wrote {folder / TASK_FILE} from {draft.examples} golds of {draft.split}:")
    table = Table(show_header=False, box=None)
    for key, value in (
        ("task", spec.name),
        ("output", spec.output_kind + (f" ({', '.join(spec.labels)})" if spec.labels else "")),
        ("profile text / title / date", f"{draft.profile_text} / {draft.profile_title or '-'}"
         f" / {draft.profile_date or '-'}"),
        ("metrics", ", ".join(spec.metrics)),
        ("max new tokens", str(spec.max_new_tokens)),
    ):  # fmt: skip
        table.add_row(key, value)
    console.print(table)
    console.print(
        f"run it: p13n bench run --tasks-dir {folder.parent} --task {folder.name} --limit 20"
    )
