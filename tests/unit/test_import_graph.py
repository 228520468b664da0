"""The import graph of the project's own packages: no cycles, and imports run one way.

Every ``import`` and ``from ... import`` in every module counts, also those inside functions
(a lazy import that closes a cycle is still a cycle). The layering (DESIGN.md):
- protocols/ and workloads/ use nothing of fabric/, transport/ or bench/;
- transport/ reads only the leaves of protocols/ (``protocols.codec``, ``protocols.limits``),
  never a protocol;
- those leaves import nothing of the project;
- no two modules import each other, directly or around a longer loop.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("fabric", "protocols", "transport", "workloads", "bench")
LEAVES = ("protocols.codec", "protocols.limits")


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            mods[name] = path
    return mods


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The project module ``name`` refers to (a symbol's module, or its package)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(name: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [module] + [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            resolved = _resolve(target)
            if resolved and resolved != name:
                found.add(resolved)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in GRAPH:
        if root in index:
            continue
        work = [(root, iter(sorted(GRAPH[root])))]
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
                    work.append((child, iter(sorted(GRAPH[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _top(name: str) -> str:
    return name.split(".")[0]


def test_the_graph_sees_the_project() -> None:
    assert {"fabric.runtime.replica", "protocols.codec", "transport.wire"} <= set(GRAPH)
    assert "protocols.codec" in GRAPH["transport.wire"]  # the walker finds real edges


def test_no_import_cycles() -> None:
    assert _cycles() == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    saved = dict(GRAPH)
    try:
        GRAPH["fabric.harness.runner"] = GRAPH["fabric.harness.runner"] | {"fabric.harness.sweep"}
        GRAPH["fabric.harness.sweep"] = GRAPH["fabric.harness.sweep"] | {"fabric.harness.runner"}
        assert ["fabric.harness.runner", "fabric.harness.sweep"] in _cycles()
    finally:
        GRAPH.clear()
        GRAPH.update(saved)


def test_protocols_and_workloads_use_nothing_of_the_runtime_or_transport() -> None:
    bad = [
        (name, dep)
        for name, deps in GRAPH.items()
        if _top(name) in ("protocols", "workloads")
        for dep in deps
        if _top(dep) in ("fabric", "transport", "bench")
    ]
    assert bad == []


def test_transport_reads_only_the_leaves_of_protocols() -> None:
    bad = [
        (name, dep)
        for name, deps in GRAPH.items()
        if _top(name) == "transport"
        for dep in deps
        if _top(dep) == "protocols" and dep not in (*LEAVES, "protocols")
    ]
    assert bad == []
    assert (ROOT / "protocols" / "__init__.py").read_text().strip() == ""  # importing it is free


def test_the_leaves_import_nothing_of_the_project() -> None:
    assert {leaf: GRAPH[leaf] for leaf in LEAVES} == {leaf: set() for leaf in LEAVES}
