"""The house rules of the package (issue 23), checked on the code as it is: no import cycle
between its modules (function-level imports counted, `__init__` re-exports not), at most 12
modules directly in `gencls_jax/`, no function over 100 lines, and every `bench/` script at least
imports and parses its arguments on a CPU. The layers themselves are pyproject.toml's
import-linter contract, which `lint-imports` checks in the same test command."""

from __future__ import annotations

import ast
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

PACKAGE = REPO / "gencls_jax"
MAX_TOP_LEVEL_MODULES = 12
MAX_FUNCTION_LINES = 100


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The package's modules `path` imports, anywhere in it (functions included): for `from a
    import b`, a.b when that is a module, else a."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.add(sub if sub in known else node.module)
    return {m for m in found if m in known}


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` (a path that returns to its start), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n) :] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_import_cycle():
    mods = modules()
    known = set(mods)
    # a package's __init__ only hands names on: its imports are not the package's own
    graph = {
        m: (set() if p.name == "__init__.py" else imports_of(p, known) - {m})
        for m, p in mods.items()
    }
    assert cycle(graph) is None, " -> ".join(cycle(graph) or [])
    # the check finds a cycle where there is one
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_few_modules_at_the_top():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_no_function_over_100_lines():
    long = [
        f"{p.relative_to(REPO)}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)"
        for p in PACKAGE.rglob("*.py")
        for n in ast.walk(ast.parse(p.read_text()))
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
        and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, long


BENCH = sorted((REPO / "bench").glob("*.py"))
# shared by the scripts, not one itself
LIBRARIES = {"fp8_dense.py", "imdb_setup.py", "run_outputs.py", "score_host.py"}


@pytest.mark.parametrize(
    "script", [p for p in BENCH if p.name not in LIBRARIES], ids=lambda p: p.name
)
def test_bench_script_imports_and_parses_its_arguments(script, monkeypatch, capsys):
    """`--help`: the script's imports run, its parser is built and parses; nothing is measured."""
    monkeypatch.syspath_prepend(str(script.parent))
    monkeypatch.setattr(sys, "argv", [str(script), "--help"])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(str(script), run_name="__main__")
    assert e.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_bench_libraries_and_shell_scripts_load(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    for name in LIBRARIES:
        runpy.run_path(str(REPO / "bench" / name))
    for sh in sorted((REPO / "bench").glob("*.sh")):
        p = subprocess.run(["bash", "-n", str(sh)], capture_output=True, text=True)
        assert p.returncode == 0, f"{sh.name}: {p.stderr}"
