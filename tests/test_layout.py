"""The library's import direction: each package imports only packages below it, and no
module imports another that (directly or through others) imports it back."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "aecnn"

# Lowest first. A package may import its own layer's modules only within itself, and any
# package of a lower layer.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"errors", "safeio", "config", "records", "version"}),  # may import each other
    frozenset({"models", "data"}),
    frozenset({"compression"}),
    frozenset({"core"}),
    frozenset({"training", "runtime"}),
    frozenset({"netem"}),
    frozenset({"evaluation"}),
    frozenset({"benchmarks"}),
    frozenset({"cli"}),
    frozenset({"__main__"}),
)


def _package(module: str) -> str:
    """``aecnn.compression.codec`` -> ``compression``; ``aecnn`` -> ``""`` (the API)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _layer(package: str) -> int:
    for i, layer in enumerate(LAYERS):
        if package in layer:
            return i
    raise AssertionError(f"package {package!r} is in no layer of tests/test_layout.py")


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every ``aecnn`` module ``path`` imports, at module level or inside a function."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "aecnn":  # from aecnn import x: x may be a module
                out |= {f"aecnn.{a.name}" for a in node.names}
            elif node.module.startswith("aecnn."):
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("aecnn")}
    return out


def graph(root: Path = SRC) -> dict[str, set[str]]:
    """Module -> the ``aecnn`` modules it imports (a name that is a symbol of a package,
    not a module, stands for that package)."""
    files = {_module_name(f, root): f for f in root.rglob("*.py")}
    g = {}
    for mod, f in files.items():
        targets = set()
        for t in imports_of(f):
            while t not in files and "." in t:
                t = t.rsplit(".", 1)[0]
            if t != mod:
                targets.add(t)
        g[mod] = targets
    return g


def violations(g: dict[str, set[str]]) -> list[str]:
    """``a -> b`` for each import that goes up the layers or across a layer."""
    bad = []
    for mod, targets in g.items():
        pkg = _package(mod)
        if not pkg:  # aecnn/__init__.py: the public API may re-export anything
            continue
        for t in targets:
            tp = _package(t)
            if tp == pkg or (tp and _layer(tp) == _layer(pkg) == 0):
                continue
            if not tp or _layer(tp) >= _layer(pkg):
                bad.append(f"{mod} -> {t}")
    return sorted(bad)


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_imports_go_down_the_layers() -> None:
    assert violations(graph()) == []


def test_no_import_circles() -> None:
    # a package's __init__ re-exporting its own modules is not a circle of the design
    g = {m: {t for t in ts if not (m.startswith(t + ".") )} for m, ts in graph().items()}
    assert cycles(g) == []


def test_runtime_needs_no_training() -> None:
    g = graph()
    reach, todo = set(), [m for m in g if _package(m) == "runtime"]
    while todo:
        m = todo.pop()
        for t in g.get(m, ()):
            if t not in reach:
                reach.add(t)
                todo.append(t)
    assert not {_package(m) for m in reach} & {"training", "evaluation", "benchmarks", "cli"}


@pytest.mark.parametrize("line, package", [
    ("from aecnn.training.loop import fit", "runtime"),
    ("from aecnn.evaluation import evaluate_checkpoint", "core"),
    ("import aecnn.cli.main", "compression"),
])
def test_a_forbidden_import_is_caught(tmp_path: Path, line: str, package: str) -> None:
    """The check fails when a forbidden import is added (in a copy of the package)."""
    import shutil

    copy = tmp_path / "aecnn"
    shutil.copytree(SRC, copy, ignore=shutil.ignore_patterns("__pycache__", "*.json"))
    victim = next(p for p in sorted((copy / package).glob("*.py")) if p.name != "__init__.py")
    victim.write_text(victim.read_text() + f"\n\ndef _late():\n    {line}\n")
    assert violations(graph(copy)), line
