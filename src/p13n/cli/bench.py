"""``p13n bench run`` (methods side by side on LaMP-format tasks; tables, plots, a report) and
``p13n bench coldstart`` (quality against profile size). The root wires them into ``bench``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from p13n.benchmarks.config import methods as bench_methods
from p13n.cli.common import (
    ApiKeyEnvOption,
    BackendOption,
    BaseUrlOption,
    ModelOption,
    comma_separated,
    console,
    handles_p13n_errors,
    llm_config,
    one_of,
)
from p13n.config import Settings
from p13n.datasets.lamp import SPLITS


@handles_p13n_errors(value_errors="bad option: ")  # a malformed --k
def run(
    config: Annotated[
        Path | None, typer.Argument(help="TOML config (\\[bench] table); flags override it.")
    ] = None,
    task: Annotated[str | None, typer.Option(help="Tasks, comma-separated.")] = None,
    tasks_dir: Annotated[Path | None, typer.Option(help="Folder of built tasks.")] = None,
    data: Annotated[
        Path | None, typer.Option(help="Data root: build missing shipped tasks from it.")
    ] = None,
    split: Annotated[str | None, typer.Option(help=f"{one_of(SPLITS)}.")] = None,
    limit: Annotated[int | None, typer.Option(help="First N examples of each task.")] = None,
    methods: Annotated[
        str | None,
        typer.Option(help=f"Methods, comma-separated: {', '.join(bench_methods.names())}."),
    ] = None,
    k: Annotated[str | None, typer.Option("--k", "-k", help="k values, e.g. 1,4.")] = None,
    backend: BackendOption = None,
    model: ModelOption = None,
    base_url: BaseUrlOption = None,
    api_key_env: ApiKeyEnvOption = None,
    swap: Annotated[
        str | None, typer.Option(help="Methods to rerun with another user's profile.")
    ] = None,
    select_k_on: Annotated[
        str | None, typer.Option(help="'dev': also run the validation split, report its k.")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="> 1: generate in parallel on Ray.")] = None,
    require_match: Annotated[
        bool | None,
        typer.Option(
            help="Retrieval arms quote only items sharing a word with the input (the default); "
            "--no-require-match quotes the top k (LaMP's protocol)."
        ),
    ] = None,
    calibration: Annotated[
        str | None,
        typer.Option(help="Likelihood tasks: none, contextual or task calibration of labels."),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder.")] = None,
    cache: Annotated[Path | None, typer.Option(help="Generation cache folder.")] = None,
) -> None:
    """Run a benchmark: every method on the same examples, against the non-personalized prompt."""
    from p13n.benchmarks.config import load_bench_config
    from p13n.benchmarks.runner import BenchRunner
    from p13n.benchmarks.runner_report import rich_table, side_by_side, write_outputs

    overrides: dict[str, object] = {
        "tasks": comma_separated(task),
        "tasks_dir": tasks_dir,
        "data": data,
        "split": split,
        "limit": limit,
        "methods": comma_separated(methods),
        "k": None if k is None else [int(v) for v in comma_separated(k) or []],
        "swap": comma_separated(swap),
        "select_k_on": select_k_on,
        "workers": workers,
        "require_match": require_match,
        "calibration": calibration,
        "out": out,
        "cache": cache,
    }
    overrides.update(_llm_flags(backend, model, base_url, api_key_env))
    settings = load_bench_config(config, **overrides)
    started = time.perf_counter()
    runner = BenchRunner(settings)
    try:
        result = runner.run()
    finally:
        runner.close()
    for task_result in result.tasks:
        console.print(rich_table(task_result, result.llm, compact=console.width < 140))
        if shown := side_by_side(task_result):
            console.print("\n".join(shown), markup=False, highlight=False)
    paths = write_outputs(result, settings.out)
    console.print(
        f"{result.generated} generated, {result.reused} reused from the cache, "
        f"{time.perf_counter() - started:.0f} s. Wrote "
        + ", ".join(str(path) for path in paths.values())
    )


def _llm_flags(
    backend: str | None, model: str | None, base_url: str | None, api_key_env: str | None
) -> dict[str, object]:
    """The ``llm`` override the flags give: the whole LLM, in place of the config file's
    ``llm`` table (none when no flag is given)."""
    if all(flag is None for flag in (backend, model, base_url, api_key_env)):
        return {}
    return {
        "llm": llm_config(
            Settings(), backend, model=model, base_url=base_url, api_key_env=api_key_env
        )
    }


@handles_p13n_errors
def coldstart(
    config: Annotated[
        Path | None, typer.Argument(help="TOML config (\\[coldstart] table); flags override it.")
    ] = None,
    task: Annotated[str | None, typer.Option(help="Tasks, comma-separated.")] = None,
    limit: Annotated[int | None, typer.Option(help="Test examples per task.")] = None,
    dev_limit: Annotated[
        int | None, typer.Option(help="Dev examples the router is chosen on.")
    ] = None,
    discovery_users: Annotated[
        int | None, typer.Option(help="Training users the personas are discovered from.")
    ] = None,
    backend: BackendOption = None,
    model: ModelOption = None,
    base_url: BaseUrlOption = None,
    api_key_env: ApiKeyEnvOption = None,
    out: Annotated[Path | None, typer.Option(help="Output folder.")] = None,
    cache: Annotated[Path | None, typer.Option(help="Generation cache folder.")] = None,
) -> None:
    """The cold-start study: each test user's profile cut to 0/1/2/5/10/all items, answered
    non-personalized and at user, persona, global and blended level, and by the router chosen
    on dev; a table, results.json and a plot of quality against profile size."""
    from p13n.benchmarks.coldstart import ColdStartStudy
    from p13n.benchmarks.coldstart_config import load_coldstart_config
    from p13n.benchmarks.coldstart_report import write_outputs

    settings = load_coldstart_config(
        config,
        tasks=comma_separated(task),
        limit=limit,
        dev_limit=dev_limit,
        discovery_users=discovery_users,
        out=out,
        cache=cache,
        **_llm_flags(backend, model, base_url, api_key_env),
    )
    study = ColdStartStudy(settings)
    try:
        result = study.run()
    finally:
        study.close()
    paths = write_outputs(result, settings.out)
    console.print(paths["summary"].read_text(), markup=False, highlight=False)
    console.print(
        f"{result.generated} generated, {result.reused} reused from the cache, "
        f"{result.seconds:.0f} s. Wrote " + ", ".join(str(path) for path in paths.values())
    )


@handles_p13n_errors(value_errors="bad option: ")
def bias(
    methods: Annotated[
        str, typer.Option(help="Prompt methods, comma-separated (none included).")
    ] = "none,bm25,dense,profile",
    k: Annotated[int, typer.Option("--k", "-k", help="Items each retrieval arm quotes.")] = 4,
    data: Annotated[
        Path | None, typer.Option(help="JSONL of users and their data (default: the demo users).")
    ] = None,
    recsys_data: Annotated[
        Path | None,
        typer.Option(help="Also the recommenders' fairness on this MovieLens folder."),
    ] = None,
    backend: BackendOption = None,
    model: ModelOption = None,
    base_url: BaseUrlOption = None,
    api_key_env: ApiKeyEnvOption = None,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path(".p13n/bench/bias"),
    cache: Annotated[Path | None, typer.Option(help="Generation cache folder.")] = None,
) -> None:
    """Bias and fairness: counterfactual gender and age in the users' data (how answers, their
    sentiment and refusals change), refusals of harmful requests per method, and with
    --recsys-data every recommender's popularity bias, calibration and per-group accuracy."""
    from p13n.benchmarks.bias import BiasConfig, run_bias
    from p13n.benchmarks.bias_report import write_outputs

    config = BiasConfig(
        methods=comma_separated(methods) or [],
        k=k,
        data=data,
        llm=llm_config(
            Settings(),
            backend or "onnx",  # like every benchmark: the fast backend unless told
            model=model,
            base_url=base_url,
            api_key_env=api_key_env,
        ),
        out=out,
        cache=cache,
    )
    started = time.perf_counter()
    paths = write_outputs(run_bias(config), out)
    console.print(paths["markdown"].read_text(encoding="utf-8"), markup=False)
    if recsys_data is not None:
        from p13n.benchmarks.recsys import RecsysConfig, run_recsys
        from p13n.benchmarks.recsys_report import write_outputs as write_recsys

        recsys_out = out / "recsys"
        recsys = run_recsys(
            RecsysConfig(data=recsys_data, llm=False, rerank=False, out=recsys_out),
            report=lambda line: console.print(f"[dim]{line}[/dim]"),
        )
        written = write_recsys(recsys, recsys_out)
        text = written["markdown"].read_text(encoding="utf-8")
        console.print(text[text.index("Popularity bias") :], markup=False)
    console.print(
        f"{time.perf_counter() - started:.0f} s. Wrote {paths['json']}, {paths['markdown']}, "
        f"{paths['plot']}" + (f" and {out / 'recsys'}" if recsys_data else "")
    )
