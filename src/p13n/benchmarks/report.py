"""The one writer of benchmark outputs: ``results.json`` (every figure and example), a markdown
summary, a plot and, where a benchmark has one, a self-contained HTML report."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class Report:
    """What one benchmark run writes, rendered by its own module."""

    results: dict[str, Any]
    """Written as ``results.json``."""
    markdown: str
    """Written as ``summary.md``, as it is."""
    plot_name: str
    plot: Callable[[Path], Path]
    """Draws the plot into the path it is given."""
    html: Callable[[Path], str] | None = None
    """The ``report.html`` page, given the drawn plot's path (None: no page)."""
    markdown_key: str = "markdown"
    """The summary's key among the written paths."""
    json_newline: bool = True
    """End ``results.json`` with a line break (the recommender benchmark's never had one)."""


def write_report(report: Report, out: Path) -> dict[str, Path]:
    """Every file of ``report`` under ``out``; their paths by kind (json, the markdown key,
    plot and, with a page, html)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / "results.json",
        report.markdown_key: out / "summary.md",
        "plot": out / report.plot_name,
    }
    text = json.dumps(report.results, indent=1, ensure_ascii=False, default=str)
    paths["json"].write_text(text + ("\n" if report.json_newline else ""), encoding="utf-8")
    paths[report.markdown_key].write_text(report.markdown, encoding="utf-8")
    report.plot(paths["plot"])
    if report.html is not None:
        paths["html"] = out / "report.html"
        paths["html"].write_text(report.html(paths["plot"]), encoding="utf-8")
    return paths


def save_figure(figure: Figure, path: Path) -> Path:
    """A finished matplotlib figure as a PNG at ``path`` (the figure is closed)."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
