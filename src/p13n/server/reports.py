"""The benchmark reports the dashboard shows: run folders under ``reports_dir``, their
summary.md as HTML, and which of their files may be served."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from markdown_it import MarkdownIt

from p13n.server.auth import TenantScope

REPORT_FILES = {
    ".png": "image/png",
    ".json": "application/json",
    ".md": "text/plain; charset=utf-8",
    ".csv": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}
"""What the reports route serves (by suffix); anything else, HTML included, is refused."""

_markdown = MarkdownIt("commonmark", {"html": False}).enable("table")


@dataclass(frozen=True)
class Report:
    name: str
    modified: datetime
    files: list[str]
    """Every file in the run folder, by name."""

    @property
    def plots(self) -> list[str]:
        return [f for f in self.files if f.endswith(".png")]


def markdown_html(text: str) -> str:
    """Markdown (tables included) as HTML; raw HTML in it is escaped, and column alignment
    becomes a class, since the pages' content security policy allows no inline styles."""
    tokens = _markdown.parse(text)
    for token in tokens:
        if token.type in ("th_open", "td_open"):
            style = str(token.attrs.pop("style", ""))
            if style.startswith("text-align:"):
                token.attrSet("class", f"align-{style.removeprefix('text-align:')}")
    html: str = _markdown.renderer.render(tokens, _markdown.options, {})
    return html


def reports_root(scope: TenantScope) -> Path:
    return scope.state.config.reports_dir.resolve()


def find_reports(root: Path) -> list[Report]:
    """Run folders directly under ``root`` holding a summary.md, results.json or plot; newest
    first."""
    if not root.is_dir():
        return []
    found = [read_report(folder) for folder in root.iterdir() if folder.is_dir()]
    shown = [r for r in found if {"summary.md", "results.json"} & set(r.files) or r.plots]
    return sorted(shown, key=lambda r: (r.modified, r.name), reverse=True)


def read_report(folder: Path) -> Report:
    """The run in ``folder``: its files, and when the newest of them changed."""
    files = sorted(p.name for p in folder.iterdir() if p.is_file())
    stamp = max([folder.stat().st_mtime, *((folder / f).stat().st_mtime for f in files)])
    return Report(folder.name, datetime.fromtimestamp(stamp), files)


def report_folder(root: Path, name: str) -> Path | None:
    """The run folder ``name`` directly under ``root``; None for anything else."""
    folder = (root / name).resolve()
    if folder.parent != root or not folder.is_dir():
        return None
    return folder


def report_file(root: Path, name: str, relative: str) -> Path | None:
    """A servable file inside run folder ``name`` (resolved: ``..`` and links that lead out of
    ``root`` are refused); None for anything else."""
    folder = report_folder(root, name)
    if folder is None:
        return None
    path = (folder / relative).resolve()
    if not path.is_relative_to(folder) or not path.is_relative_to(root) or not path.is_file():
        return None
    return path if path.suffix.lower() in REPORT_FILES else None
