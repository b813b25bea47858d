"""The import direction of ARCHITECTURE.md, checked on the source (function-level imports
included, since a cycle hidden inside a function is still a cycle):

- core (``fl_sim`` outside ``fl_sim/app/``) imports neither ``clients``, ``strategies`` nor
  ``fl_sim.app``;
- ``clients`` and ``strategies`` are built on core and never import each other or the app;
- no cycle between files, and none between the packages.
"""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROOTS = ("fl_sim", "clients", "strategies")


def modules() -> dict[str, Path]:
    out = {}
    for root in ROOTS:
        for path in (REPO / root).rglob("*.py"):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def imports_of(path: Path, mods: dict[str, Path]) -> set[str]:
    """Project modules that ``path`` imports, resolved to the most specific module file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import (use absolute imports)"
            base = node.module or ""
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
        for name in names:
            while name and name not in mods:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports_of(p, mods) - {m} for m, p in mods.items()}


def layer(module: str) -> str:
    if module == "fl_sim.app" or module.startswith("fl_sim.app."):
        return "app"
    return module.split(".")[0]


# Which layers each layer may import: app on top, clients and strategies side by side on core.
ALLOWED = {
    "fl_sim": {"fl_sim"},
    "clients": {"clients", "fl_sim"},
    "strategies": {"strategies", "fl_sim"},
    "app": {"app", "fl_sim", "clients", "strategies"},
}


def test_imports_point_down_the_layers():
    bad = [f"{m} ({layer(m)}) imports {d} ({layer(d)})"
           for m, deps in sorted(graph().items()) for d in sorted(deps)
           if layer(d) not in ALLOWED[layer(m)]]
    assert not bad, "\n".join(bad)


def _cycle(g: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for d in sorted(g.get(n, ())):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state and (c := visit(d)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(g):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_no_cycle_between_files():
    # A package's __init__ that re-exports its submodules is the package's own face: an
    # edge from a submodule to its own package's __init__ is followed like any other.
    cycle = _cycle(graph())
    assert cycle is None, " -> ".join(cycle)


def test_no_cycle_between_packages():
    g: dict[str, set[str]] = {}
    for m, deps in graph().items():
        g.setdefault(layer(m), set()).update(layer(d) for d in deps if layer(d) != layer(m))
    cycle = _cycle(g)
    assert cycle is None, " -> ".join(cycle)


def test_the_checker_sees_a_violation(tmp_path):
    # The test must be able to fail: a core file importing strategies is caught.
    mods = {"fl_sim.x": tmp_path / "x.py", "strategies.y": tmp_path / "y.py"}
    mods["fl_sim.x"].write_text("def f():\n    from strategies.y import z\n")
    assert imports_of(mods["fl_sim.x"], mods) == {"strategies.y"}
    assert _cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
