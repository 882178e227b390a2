"""What a cold-start study measured, and its report: per task and profile cut, each arm's primary
metric with its interval, the paired tests, the router's levels; a markdown table and a plot of
quality against profile size."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from p13n.benchmarks.coldstart_config import COLLAB, ROUTER, ColdStartConfig, Policy, size_label
from p13n.benchmarks.report import Report, save_figure, write_report
from p13n.datasets.lamp import TaskSpec
from p13n.evaluate.stats import Interval, PairedComparison


@dataclass
class SizeResult:
    """One profile cut of one task: each arm's primary metric with its interval."""

    size: int
    n: int
    mean_items: float
    values: dict[str, Interval]
    versus_none: dict[str, PairedComparison]
    router_versus_user: PairedComparison | None
    router_levels: dict[str, int]


@dataclass
class TaskStudy:
    task: str
    spec: TaskSpec
    metric: str
    higher_is_better: bool
    policy: Policy
    dev_scores: dict[str, float]
    dev_n: int
    discovery: dict[str, Any]
    sizes: list[SizeResult] = field(default_factory=list)
    examples: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "router_policy": dataclasses.asdict(self.policy),
            "dev": {"n": self.dev_n, "policy_scores": self.dev_scores},
            "discovery": self.discovery,
            "sizes": [
                {
                    "size": size_label(s.size),
                    "n": s.n,
                    "mean_items": s.mean_items,
                    "arms": {arm: dataclasses.asdict(v) for arm, v in s.values.items()},
                    "versus_none": {arm: dataclasses.asdict(c) for arm, c in s.versus_none.items()},
                    "router_versus_user": (
                        dataclasses.asdict(s.router_versus_user) if s.router_versus_user else None
                    ),
                    "router_levels": s.router_levels,
                }
                for s in self.sizes
            ],
            "examples": self.examples,
        }


@dataclass
class ColdStartResult:
    config: ColdStartConfig
    tasks: list[TaskStudy]
    generated: int
    reused: int
    llm: dict[str, str]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": json.loads(self.config.model_dump_json()),
            "llm": self.llm,
            "cache": {"generated": self.generated, "reused": self.reused},
            "seconds": round(self.seconds, 1),
            "tasks": [t.to_dict() for t in self.tasks],
        }


def markdown(result: ColdStartResult) -> str:
    lines = [
        f"# Cold-start study: {result.config.name}",
        "",
        f"Model {result.llm['backend']}:{result.llm['model']}; retriever "
        f"{result.config.retriever} k={result.config.k}; {result.generated} answers generated, "
        f"{result.reused} from the cache; {result.seconds:.0f} s.",
        "",
    ]
    for task in result.tasks:
        arrow = "↑" if task.higher_is_better else "↓"
        p = task.policy
        arms = list(task.sizes[0].values)
        lines += [
            f"## {task.task} ({task.metric} {arrow})",
            "",
            f"Router chosen on {task.dev_n} dev users x {len(task.sizes)} cuts: global below "
            f"{p.persona_min} items, persona{' + members' if p.collaborative else ''} below "
            f"{p.user_min}, then user"
            f"{' + persona description' if p.blend else ''}. Personas: "
            f"{len(task.discovery['personas'])} from {task.discovery['users']} training users.",
            "",
            "| items | n | " + " | ".join(arms) + " | router - user (p) | router levels |",
            "|---|---:|" + "---:|" * len(arms) + "---|---|",
        ]
        for s in task.sizes:
            cells = []
            for arm in arms:
                value = s.values[arm].value
                mark = ""
                versus = s.versus_none.get(arm)
                if versus is not None and versus.p_value < 0.05:
                    mark = " †"
                cells.append(f"{value:.4f}{mark}")
            c = s.router_versus_user
            delta = f"{c.difference:+.4f} ({c.p_value:.2f})" if c else "-"
            levels = ", ".join(f"{k} {v}" for k, v in s.router_levels.items())
            lines.append(
                f"| {size_label(s.size)} (mean {s.mean_items:g}) | {s.n} | "
                + " | ".join(cells)
                + f" | {delta} | {levels} |"
            )
        lines += ["", "† paired randomization p < 0.05 against `none`.", ""]
        for persona in task.discovery["personas"]:
            lines.append(
                f"- `{persona['id']}` ({persona['members']} users): {persona['description']}"
            )
        lines += [f"- `global`: {task.discovery['global']}", ""]
    return "\n".join(lines)


def plot(result: ColdStartResult, path: Path) -> Path:
    """Per task: each arm's score against profile size (top), and the paired difference to the
    non-personalized prompt of user-only and the router, with 95% intervals (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = result.tasks
    figure, axes = plt.subplots(
        2, len(tasks), figsize=(5.5 * len(tasks), 7), squeeze=False, sharex="col"
    )
    styles = {
        "none": ("grey", "--"),
        "user": ("tab:blue", "-"),
        "persona": ("tab:orange", "-"),
        "global": ("tab:green", ":"),
        "blend": ("tab:purple", "-."),
        COLLAB: ("tab:brown", "-."),
        ROUTER: ("black", "-"),
    }
    for column, task in enumerate(tasks):
        top, bottom = axes[0][column], axes[1][column]
        x = np.arange(len(task.sizes))
        for arm, (colour, line) in styles.items():
            if arm not in task.sizes[0].values:
                continue
            values = [s.values[arm].value for s in task.sizes]
            width = 2.2 if arm == ROUTER else 1.4
            top.plot(x, values, line, color=colour, label=arm, linewidth=width, marker="o", ms=3)
        for offset, arm in ((-0.06, "user"), (0.06, ROUTER)):
            colour = styles[arm][0]
            diffs = [s.versus_none[arm] for s in task.sizes]
            middle = np.array([d.difference for d in diffs])
            errors = np.array(
                [[d.difference - d.low for d in diffs], [d.high - d.difference for d in diffs]]
            )
            bottom.errorbar(
                x + offset, middle, yerr=errors, fmt="o-", color=colour, label=arm, capsize=3
            )
        bottom.axhline(0, color="grey", linestyle="--", linewidth=1)
        arrow = "↑" if task.higher_is_better else "↓"
        top.set_title(task.task)
        top.set_ylabel(f"{task.metric} {arrow}")
        bottom.set_ylabel(f"{task.metric} minus none (95% CI)")
        bottom.set_xticks(x, [size_label(s.size) for s in task.sizes])
        bottom.set_xlabel("profile items kept")
        for axis in (top, bottom):
            axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, ncol=2)
    axes[1][0].legend(fontsize=8)
    figure.suptitle(f"Cold start: quality against profile size ({result.llm['model']})")
    return save_figure(figure, path)


def write_outputs(result: ColdStartResult, out: Path) -> dict[str, Path]:
    """``results.json``, ``summary.md`` and ``coldstart.png`` under ``out``."""
    report = Report(
        results=result.to_dict(),
        markdown=markdown(result) + "\n",
        plot_name="coldstart.png",
        plot=lambda path: plot(result, path),
        markdown_key="summary",
    )
    return write_report(report, out)
