"""The shape of the package (DESIGN.md): modules readable in one sitting, private names kept
private, and the layer contracts that `make lint` runs through import-linter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "p13n"
MAX_LINES = 500


def modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_module_is_over_500_lines() -> None:
    long = {
        str(path.relative_to(SRC)): count
        for path in modules()
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


def private_imports(source: str, importer: str, *, is_package: bool = False) -> list[str]:
    """``from p13n.x import _name`` in ``source`` where ``p13n.x`` is not the importing module's
    own package (a package's ``__init__`` may gather its modules' names)."""
    package = importer if is_package else importer.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
            continue
        if not node.module.startswith("p13n"):
            continue
        for alias in node.names:
            private = alias.name.startswith("_") and not alias.name.startswith("__")
            if private and node.module != package:
                found.append(f"{importer}:{node.lineno} {node.module}.{alias.name}")
    return found


def test_private_names_are_not_imported_from_other_modules() -> None:
    found = [
        hit
        for path in modules()
        for hit in private_imports(
            path.read_text(encoding="utf-8"),
            module_name(path),
            is_package=path.name == "__init__.py",
        )
    ]
    assert found == []


def test_private_import_scan_finds_them() -> None:
    source = (
        "from p13n.llm.hf import _Loaded\n"
        "from p13n.cli import __version__\n"
        "from p13n.cli import _own\n"
        "def later():\n    from p13n.store.sql import _COLUMNS\n"
    )
    assert private_imports(source, "p13n.cli.leaf") == [
        "p13n.cli.leaf:1 p13n.llm.hf._Loaded",
        "p13n.cli.leaf:5 p13n.store.sql._COLUMNS",
    ]


def test_import_contracts_hold() -> None:
    """The layers and no-cycle contracts in pyproject.toml (also part of `make lint`)."""
    linter = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(linter), "--no-cache"],
        cwd=SRC.parents[1],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
