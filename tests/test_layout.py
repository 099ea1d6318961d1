"""The package layout's rules (docs/DEVELOPING.md): no import cycle anywhere in varcall
(imports inside functions and under TYPE_CHECKING count), no module over 600 lines, no
function over 80 lines except numba kernels whose length a ``# long kernel:`` comment in
their body justifies. The stage layering itself is checked by import-linter (`make lint`)."""

from __future__ import annotations

import ast
from pathlib import Path

import grimp
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "varcall"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    modules = sorted(graph.modules)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in modules:
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_no_import_cycles() -> None:
    graph = grimp.build_graph("varcall", include_external_packages=False)
    # a package's __init__ re-exporting from its own modules is not a cycle of code
    for module in list(graph.modules):
        for imported in list(graph.find_modules_directly_imported_by(module)):
            if imported.startswith(module + "."):
                graph.remove_import(importer=module, imported=imported)
    assert _cycles(graph) == []


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_size(path: Path) -> None:
    n = len(path.read_text().splitlines())
    assert n <= MAX_MODULE_LINES, f"{path}: {n} lines (at most {MAX_MODULE_LINES})"


def _long_functions(path: Path) -> list[str]:
    text = path.read_text()
    lines = text.splitlines()
    out = []
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        n = node.end_lineno - node.lineno + 1
        body = "\n".join(lines[node.lineno - 1 : node.end_lineno])
        jitted = any("njit" in ast.unparse(d) or "jit" in ast.unparse(d) for d in node.decorator_list)
        if n > MAX_FUNCTION_LINES and not (jitted and "# long kernel:" in body):
            out.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({n} lines)")
    return out


def test_function_length() -> None:
    long = [f for p in _sources() for f in _long_functions(p)]
    assert long == [], "functions over 80 lines:\n" + "\n".join(long)
