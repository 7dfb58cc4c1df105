"""The shape docs/architecture.md describes: imports run one way, and the core knows no builtin by name."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "loraforge"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imported(name: str) -> set[str]:
    """loraforge modules `name` imports at run time, inside functions too; `if TYPE_CHECKING:` blocks are not."""
    path = MODULES[name]
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = ".".join(package[:len(package) - child.level + 1] if child.level else [])
                target = ".".join(x for x in (base, child.module or "") if x)
                found.add(target)
                found.update(f"{target}.{a.name}" for a in child.names)
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: imported(name) for name in MODULES}


def test_the_core_imports_no_builtin() -> None:
    # builtins are found through the registry (the plugin manager loads them by module name, like any plugin)
    core = [m for m in GRAPH if not m.startswith("loraforge.builtin")]
    offenders = {m: sorted(d for d in GRAPH[m] if d.startswith("loraforge.builtin")) for m in core}
    assert {m: d for m, d in offenders.items() if d} == {}


def test_the_import_graph_has_no_cycle() -> None:
    cycles, state, path = [], {}, []

    def walk(node: str) -> None:
        state[node] = "open"
        path.append(node)
        for dep in sorted(GRAPH[node]):
            if state.get(dep) == "open":
                cycles.append(path[path.index(dep):] + [dep])
            elif dep not in state:
                walk(dep)
        path.pop()
        state[node] = "done"

    for name in sorted(GRAPH):
        if name not in state:
            walk(name)
    assert cycles == []


def test_the_graph_sees_imports_inside_functions() -> None:
    # what made the old circle invisible: the check must see them
    assert "loraforge.train" in GRAPH["loraforge.engine"]  # imported inside engine.execute
