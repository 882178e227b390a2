"""``p13n bench indirect``: indirect personalization (user data -> embeddings -> a predictor) on
rating and label tasks and MovieLens, against the best non-personalized predictor. The root wires
it into ``bench``."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from p13n.cli.common import comma_separated, console, handles_p13n_errors
from p13n.errors import ConfigError

if TYPE_CHECKING:
    from p13n.benchmarks.indirect import TaskRun
    from p13n.benchmarks.indirect_scores import TaskScore

METRIC_LABELS = {"mae": "MAE", "rmse": "RMSE", "accuracy": "accuracy", "macro-f1": "macro-F1"}
LOWER_IS_BETTER = {"mae", "rmse"}
PLOT_NAME = "indirect.png"
# What each scored split is chosen on: never the split that is scored.
SELECTION_SPLIT = {"test": "dev", "dev": "train"}


@contextmanager
def _progress() -> Iterator[Callable[[str, int, int], None]]:
    """A ``progress(step, done, total)`` callback drawing rich bars on stderr."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    bars = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    tasks: dict[str, Any] = {}
    last: dict[str, int] = {}

    def update(step: str, done: int, total: int) -> None:
        if step in tasks and done < last[step]:  # the step starts over (the next task)
            bars.remove_task(tasks.pop(step))
        if step not in tasks:
            tasks[step] = bars.add_task(step, total=total)
        last[step] = done
        bars.update(tasks[step], completed=done, total=total)

    with bars:
        yield update


def _interval(value: float, low: float, high: float, signed: bool = False) -> str:
    fmt = "{:+.3f}" if signed else "{:.3f}"
    if math.isnan(low) or math.isnan(high):
        return fmt.format(value)
    return f"{fmt.format(value)} [{fmt.format(low)}, {fmt.format(high)}]"


def _p(value: float) -> str:
    # the randomization p-value is at least 1/(resamples + 1): 0.001 at the default 1000
    return f"{value:.3f}" if value >= 0.0005 else f"{value:.1e}"


def _chosen(run: TaskRun) -> str:
    parts = []
    for name, values in run.chosen.items():
        shown = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
        )
        parts.append(f"{name}: {shown}")
    return "; ".join(parts)


def task_table(score: TaskScore) -> Table:
    """One task's predictors as a terminal table: metrics with 95% bootstrap intervals, the
    paired difference to the reference with its p-value, and fallback counts."""
    run = score.run
    table = Table(
        title=(
            f"{run.task} ({run.split}, n={len(run.ids)}): Δ vs {score.reference}, the best "
            f"non-personalized predictor on {run.chosen_on}"
        ),
        title_justify="left",
        caption=f"chosen on {run.chosen_on}: {_chosen(run)}. " + "; ".join(run.notes) + ".",
        caption_justify="left",
    )
    table.add_column("predictor", no_wrap=True)
    table.add_column("personal")
    for name in score.metric_names:
        table.add_column(f"{METRIC_LABELS[name]} [95% CI]", justify="right")
    for name in score.metric_names:
        table.add_column(f"Δ {METRIC_LABELS[name]}", justify="right")
        table.add_column("p", justify="right")
    table.add_column("fallbacks", justify="right")
    for arm in score.arms:
        cells = [arm.name, "yes" if arm.personalized else "no"]
        cells += [_interval(m.value, m.low, m.high) for m in arm.metrics.values()]
        for name in score.metric_names:
            if arm.paired is None:
                cells += ["(ref)", ""]
            else:
                c = arm.paired[name]
                cells += [_interval(c.difference, c.low, c.high, signed=True), _p(c.p_value)]
        cells.append(str(arm.fallbacks))
        table.add_row(*cells)
    return table


def write_plot(scores: Sequence[TaskScore], path: Path) -> Path:
    """One panel per task: each predictor's primary metric with its 95% interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(len(score.arms) for score in scores)
    figure, axes = plt.subplots(
        1, len(scores), figsize=(4.8 * len(scores), 0.45 * rows + 1.6), squeeze=False
    )
    for axis, score in zip(axes[0], scores, strict=True):
        metric = score.run.primary
        names = [arm.name for arm in score.arms]
        values = [arm.metrics[metric].value for arm in score.arms]
        errors = [
            [arm.metrics[metric].value - arm.metrics[metric].low for arm in score.arms],
            [arm.metrics[metric].high - arm.metrics[metric].value for arm in score.arms],
        ]
        colors = ["tab:orange" if arm.personalized else "tab:gray" for arm in score.arms]
        axis.barh(names, values, xerr=errors, color=colors, capsize=3)
        axis.invert_yaxis()
        better = "lower" if metric in LOWER_IS_BETTER else "higher"
        axis.set_xlabel(f"{METRIC_LABELS[metric]} ({better} is better; 95% CI)")
        axis.set_title(f"{score.run.task} (n={len(score.run.ids)})", fontsize=10)
    figure.suptitle("Indirect personalization: orange uses the user's own data", fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def _load_llm() -> tuple[Any, Any]:
    from p13n.llm import LLMConfig, get_llm
    from p13n.llm.cache import GenerationCache
    from p13n.paths import cache_dir

    return get_llm(LLMConfig()), GenerationCache(cache_dir() / "bench" / "indirect-llm.sqlite")


@handles_p13n_errors
def indirect(
    tasks_dir: Annotated[
        Path, typer.Option(help="Folder of built tasks (p13n tasks build).")
    ] = Path("tasks"),
    task: Annotated[
        str, typer.Option(help="Rating or label tasks in tasks-dir, comma-separated; '' for none.")
    ] = "review-rating,news-category",
    movielens: Annotated[
        Path | None,
        typer.Option(help="A MovieLens 100K folder: also run its u1.base -> u1.test fold."),
    ] = None,
    split: Annotated[
        str,
        typer.Option(help="Scored split of the tasks: test (choices on dev) or dev (on train)."),
    ] = "test",
    limit: Annotated[
        int | None,
        typer.Option(help="First N examples of each split (MovieLens: of u1.test).", min=1),
    ] = None,
    llm: Annotated[
        bool, typer.Option("--llm/--no-llm", help="Add llm-expected (the embedded LLM) on ratings.")
    ] = False,
    llm_limit: Annotated[
        int | None,
        typer.Option(help="With --llm: every predictor on the first N examples only.", min=1),
    ] = None,
    resamples: Annotated[
        int, typer.Option(help="Bootstrap and randomization resamples.", min=10)
    ] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the dev holdout and the resamples.")] = 0,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path(".p13n/bench/indirect"),
) -> None:
    """Indirect personalization: the user's own history as embeddings and statistics feeding
    rating and label predictors, each against the best non-personalized one."""
    from p13n.benchmarks.indirect import run_lamp_label, run_lamp_rating, run_movielens
    from p13n.benchmarks.indirect_scores import score_to_dict
    from p13n.datasets.lamp import read_split
    from p13n.encode import get_encoder
    from p13n.errors import IndirectDataError
    from p13n.paths import cache_dir
    from p13n.predict.history import EmbeddingTable

    started = time.perf_counter()
    names = comma_separated(task) or []
    if not names and movielens is None:
        raise ConfigError("nothing to run: name --task and/or --movielens")
    if split not in SELECTION_SPLIT:
        raise ConfigError(f"--split must be test or dev, not {split!r}")
    if llm_limit is not None and not llm:
        raise ConfigError("--llm-limit needs --llm")
    scores: list[TaskScore] = []
    model: Any = None
    llm_cache: Any = None
    table: EmbeddingTable | None = None
    try:
        with _progress() as progress:
            table = EmbeddingTable(
                get_encoder(),
                cache=cache_dir() / "bench" / "indirect-embeddings.sqlite",
                progress=progress,
            )
            for name in names:
                folder = tasks_dir / name
                if (
                    not (folder / f"{split}_questions.json").exists()
                    and not (folder / split / f"{split}_questions.json").exists()
                ):
                    raise IndirectDataError(
                        f"{folder}: no {split} split; build it with `p13n tasks build {name} "
                        f"--data ../shared/data --out {tasks_dir}`"
                    )
                train = read_split(folder, "train")
                choose = read_split(folder, SELECTION_SPLIT[split])
                scored = read_split(folder, split)
                kind = scored.spec.output_kind
                run: TaskRun
                if kind == "rating":
                    if llm and model is None:
                        model, llm_cache = _load_llm()
                    run = run_lamp_rating(
                        train,
                        choose,
                        scored,
                        table,
                        limit=limit,
                        llm=model if llm else None,
                        llm_limit=llm_limit,
                        llm_cache=llm_cache,
                        progress=progress,
                    )
                elif kind == "label":
                    run = run_lamp_label(
                        train, choose, scored, table, limit=limit, progress=progress
                    )
                else:
                    raise IndirectDataError(
                        f"task {name!r} has {kind} outputs: indirect predictors need ratings "
                        "or labels"
                    )
                scores.append(_scored(run, resamples, seed, progress))
            if movielens is not None:
                run = run_movielens(movielens, table, limit=limit, seed=seed, progress=progress)
                scores.append(_scored(run, resamples, seed, progress))
    finally:
        if table is not None:
            table.close()
        if llm_cache is not None:
            llm_cache.close()
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.json"
    results.write_text(
        json.dumps(
            {
                "command": {
                    "tasks_dir": str(tasks_dir),
                    "tasks": names,
                    "movielens": None if movielens is None else str(movielens),
                    "split": split,
                    "limit": limit,
                    "llm": llm,
                    "llm_limit": llm_limit,
                    "resamples": resamples,
                    "seed": seed,
                },
                "encoder": table.encoder.id,
                "llm": None if model is None else {"backend": model.backend, "model": model.model},
                "tasks": [score_to_dict(score) for score in scores],
            },
            ensure_ascii=False,
            indent=1,
        )
        + "\n",
        encoding="utf-8",
    )
    plot = write_plot(scores, out / PLOT_NAME)
    assert table is not None
    console.print(
        f"{table.encoded} texts embedded, {time.perf_counter() - started:.0f} s in all. "
        f"Wrote {results}, {plot}"
    )


def _scored(
    run: TaskRun, resamples: int, seed: int, progress: Callable[[str, int, int], None]
) -> TaskScore:
    """Score a run and print its table at once (long benchmarks show each task as it ends)."""
    from p13n.benchmarks.indirect_scores import score_run

    progress(f"statistics: {run.task}", 0, 1)
    score = score_run(run, resamples=resamples, seed=seed)
    progress(f"statistics: {run.task}", 1, 1)
    console.print(task_table(score))
    console.print(f"{run.task}: {run.seconds:.0f} s to fit and predict")
    return score
