"""The core stays pure: no I/O, no randomness, nothing of prefork outside ``prefork.core``.

Two independent checks: an AST walk over every file of ``src/prefork/core`` (it names the
file and line of each offending import), and import-linter's contracts from pyproject.toml
(the arrows between the packages of DESIGN.md).
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
CORE = SRC / "prefork" / "core"

# Modules (and their submodules) the core must not import: they do I/O, touch processes or
# clocks, or are nondeterministic (the same events must give the same effects).
FORBIDDEN_MODULES = frozenset(
    {
        "os",
        "signal",
        "time",
        "select",
        "selectors",
        "socket",
        "subprocess",
        "threading",
        "mmap",
        "fcntl",
        "logging.handlers",
        "multiprocessing",
        "asyncio",
        "io",
        "pathlib",
        "shutil",
        "tempfile",
        "random",
    }
)
# Builtins that do I/O or import behind the walk's back.
FORBIDDEN_CALLS = frozenset({"open", "print", "input", "breakpoint", "__import__"})
# Names from `logging` that create or configure handlers (I/O); plain `logging` is allowed.
FORBIDDEN_LOGGING_NAMES = frozenset({"basicConfig", "handlers"})


def _is_forbidden_module(name: str) -> bool:
    return any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN_MODULES)


def _is_logging_handler(name: str) -> bool:
    return name.endswith("Handler") or name in FORBIDDEN_LOGGING_NAMES


def _is_outside_core(name: str) -> bool:
    return (name == "prefork" or name.startswith("prefork.")) and not (
        name == "prefork.core" or name.startswith("prefork.core.")
    )


def _package_of(path: Path, src: Path) -> list[str]:
    """The dotted package a file's relative imports start from, as parts."""
    parts = list(path.relative_to(src).with_suffix("").parts)
    return parts[:-1]  # for __init__.py that drops "__init__", for a module its own name


def _resolve_relative(node: ast.ImportFrom, package: list[str]) -> str:
    base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
    return ".".join([*base, node.module] if node.module else base)


def violations_in(source: str, path: Path, src: Path = SRC) -> Iterator[str]:
    """Every forbidden import or call in ``source`` (the text of ``path``), as messages."""
    tree = ast.parse(source, filename=str(path))
    where = path.relative_to(src.parent) if path.is_relative_to(src.parent) else path
    package = _package_of(path, src) if path.is_relative_to(src) else []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _is_forbidden_module(alias.name):
                    yield f"{where}:{line}: imports {alias.name}"
                elif _is_outside_core(alias.name):
                    yield f"{where}:{line}: imports {alias.name}, outside prefork.core"
        elif isinstance(node, ast.ImportFrom):
            module = _resolve_relative(node, package) if node.level else (node.module or "")
            if _is_forbidden_module(module):
                yield f"{where}:{line}: imports from {module}"
            elif _is_outside_core(module):
                yield f"{where}:{line}: imports from {module}, outside prefork.core"
            for alias in node.names:
                full = f"{module}.{alias.name}"
                if _is_forbidden_module(full) or (
                    module == "logging" and _is_logging_handler(alias.name)
                ):
                    yield f"{where}:{line}: imports {full}"
                elif module == "prefork" and _is_outside_core(full):
                    yield f"{where}:{line}: imports {full}, outside prefork.core"
        elif isinstance(node, ast.Attribute):
            if (
                isinstance(node.value, ast.Name)
                and node.value.id == "logging"
                and _is_logging_handler(node.attr)
            ):
                yield f"{where}:{line}: uses logging.{node.attr}"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in FORBIDDEN_CALLS
        ):
            yield f"{where}:{line}: calls {node.func.id}()"


def core_files() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def test_the_core_exists() -> None:
    assert core_files(), f"no Python files under {CORE}"


def test_the_core_imports_no_io_and_nothing_outside_core() -> None:
    found = [
        message
        for path in core_files()
        for message in violations_in(path.read_text(encoding="utf-8"), path)
    ]
    assert not found, "the core must stay pure:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import os", "imports os"),
        ("import os.path as p", "imports os.path"),
        ("from time import monotonic", "imports from time"),
        ("import logging.handlers", "imports logging.handlers"),
        ("from logging import handlers", "imports logging.handlers"),
        ("from logging import FileHandler", "imports logging.FileHandler"),
        ("import logging\nlogging.StreamHandler()", "uses logging.StreamHandler"),
        ("import random", "imports random"),
        ("def f():\n    import subprocess", "imports subprocess"),
        ("from prefork import posix", "imports prefork.posix, outside prefork.core"),
        ("from prefork.api import Master", "imports from prefork.api, outside"),
        ("from .. import cli", "imports from prefork, outside prefork.core"),
        ("from ..posix import adapter", "imports from prefork.posix, outside"),
        ("open('x')", "calls open()"),
        ("print('x')", "calls print()"),
    ],
)
def test_the_walk_catches(source: str, expected: str) -> None:
    path = CORE / "example.py"
    messages = list(violations_in(source, path))
    assert any(expected in message for message in messages), messages
    assert all(message.startswith("src/prefork/core/example.py:") for message in messages)


@pytest.mark.parametrize(
    "source",
    [
        "import logging",
        "from logging import getLogger",
        "import math, re, dataclasses",
        "from . import events",
        "from .events import Tick",
        "from prefork.core.signals import Sig",
        "import transitions",
        "from typing import TYPE_CHECKING",
    ],
)
def test_the_walk_allows(source: str) -> None:
    assert list(violations_in(source, CORE / "example.py")) == []


def test_relative_imports_resolve_from_a_package_init() -> None:
    init = CORE / "__init__.py"
    assert list(violations_in("from .config import PoolConfig", init)) == []
    assert list(violations_in("from .. import cli", init))


def _lint_imports_command() -> list[str]:
    """import-linter's command from the running interpreter's environment."""
    bindir = Path(sys.executable).parent
    for name in ("lint-imports", "lint-imports.exe"):
        candidate = bindir / name
        if candidate.exists():
            return [str(candidate)]
    found = shutil.which("lint-imports")
    assert found, "import-linter is not installed: pip install -e '.[test]'"
    return [found]


def test_import_linter_contracts_are_kept() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [*_lint_imports_command(), "--no-cache"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"lint-imports failed:\n{done.stdout}\n{done.stderr}"


# no import cycles anywhere in prefork ----------------------------------------------------

PACKAGE = SRC / "prefork"


def _module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(node: ast.AST, package: list[str], known: set[str]) -> Iterator[str]:
    """The prefork modules one import statement names (``from x import y`` counts ``x.y``
    when that is a module, else ``x``)."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name in known:
                yield alias.name
    elif isinstance(node, ast.ImportFrom):
        module = _resolve_relative(node, package) if node.level else (node.module or "")
        for alias in node.names:
            full = f"{module}.{alias.name}"
            if full in known:
                yield full
            elif module in known:
                yield module


def import_graph(root: Path = PACKAGE, src: Path = SRC) -> dict[str, set[str]]:
    """Module -> the prefork modules it imports, every import counted (inside functions
    and under ``if TYPE_CHECKING:`` too: a cycle a type checker sees is a cycle)."""
    paths = {_module_name(path, src): path for path in sorted(root.rglob("*.py"))}
    known = set(paths)
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        package = _package_of(path, src)
        graph[name] = {
            imported for node in ast.walk(tree)
            for imported in _imported_modules(node, package, known)
            if imported != name
        }
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (its modules, the first repeated at the end), or None."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(module: str) -> list[str] | None:
        if module in on_path:
            return [*path[path.index(module):], module]
        if module in done:
            return None
        path.append(module)
        on_path.add(module)
        for imported in sorted(graph.get(module, ())):
            cycle = visit(imported)
            if cycle:
                return cycle
        path.pop()
        on_path.discard(module)
        done.add(module)
        return None

    for module in sorted(graph):
        cycle = visit(module)
        if cycle:
            return cycle
    return None


def test_no_import_cycles_in_prefork() -> None:
    graph = import_graph()
    assert graph.get("prefork.core.supervisor") and graph.get("prefork.child.runtime")
    cycle = find_cycle(graph)
    assert cycle is None, "an import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_walk_sees_type_checking_and_relative_imports(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from typing import TYPE_CHECKING\n"
                                  "if TYPE_CHECKING:\n    from pkg.b import B\n")
    (package / "b.py").write_text("from . import c\n")
    (package / "c.py").write_text("def f():\n    import pkg.a\n")
    graph = import_graph(package, tmp_path)
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.c"}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]
    (package / "c.py").write_text("import pkg.b as b\n")
    assert find_cycle(import_graph(package, tmp_path)) == ["pkg.b", "pkg.c", "pkg.b"]
    (package / "c.py").write_text("import json\n")
    assert find_cycle(import_graph(package, tmp_path)) is None
