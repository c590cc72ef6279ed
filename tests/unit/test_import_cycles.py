"""The import graph of ``echoposed_ros`` and ``echoposed_sim`` has no cycle.

The graph is read from the source with ``ast``, not by importing. Nodes are the project's modules;
a package's ``__init__`` is a node of its own, named by the package. Edges are the imports that run
when a module is loaded: statements at module level (inside ``if``/``try``/``with`` and class bodies
too), relative forms resolved to absolute names; imports inside functions (deliberately lazy) and
under ``if TYPE_CHECKING:`` do not count (the first run only when called, after loading; the
second never), so they cannot meet a half-initialised module. ``from P import x`` is an edge to ``P.x`` when that is a
project module, else to ``P``; importing ``a.b.c`` is an edge to ``a.b.c`` only (its parent
packages are loaded first, but a submodule importing a sibling through its package is no cycle).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Top-level package name -> its source folder.
PACKAGES = {'echoposed_ros': ROOT / 'echoposed_ros', 'echoposed_sim': ROOT / 'sim'}


def project_modules() -> dict[str, Path]:
    """{dotted name: file} of every module of the packages; ``__init__.py`` is named by its package."""
    out: dict[str, Path] = {}
    for top, folder in PACKAGES.items():
        for path in sorted(folder.rglob('*.py')):
            parts = path.relative_to(folder).with_suffix('').parts
            if '__pycache__' in parts:
                continue
            if parts[-1] == '__init__':
                parts = parts[:-1]
            out['.'.join((top, *parts))] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == 'TYPE_CHECKING') or (
        isinstance(test, ast.Attribute) and test.attr == 'TYPE_CHECKING')


def _load_time_imports(body: list[ast.stmt]):
    """The Import / ImportFrom statements run when ``body`` runs at module level (no function bodies,
    no ``if TYPE_CHECKING:`` branch)."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _load_time_imports(node.body)
            yield from _load_time_imports(node.orelse)
        elif isinstance(node, ast.ClassDef):
            yield from _load_time_imports(node.body)
        else:
            for field in ('body', 'orelse', 'finalbody', 'handlers', 'cases'):
                inner = getattr(node, field, None)
                if isinstance(inner, list):
                    for item in inner:
                        if isinstance(item, (ast.ExceptHandler, ast.match_case)):
                            yield from _load_time_imports(item.body)
                    yield from _load_time_imports([s for s in inner if isinstance(s, ast.stmt)])


def import_graph() -> dict[str, set[str]]:
    """{module: project modules it imports at load time}."""
    modules = project_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == '__init__.py'
        package = name if is_package else name.rpartition('.')[0]
        edges: set[str] = set()
        for node in _load_time_imports(ast.parse(path.read_text(), filename=str(path)).body):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = package.split('.')
                    base = base[:len(base) - (node.level - 1)]
                    source = '.'.join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ''
                targets = []
                for alias in node.names:
                    sub = f'{source}.{alias.name}'
                    targets.append(sub if sub in modules else source)
            edges.update(t for t in targets if t in modules and t != name)
        graph[name] = edges
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) per strongly connected component with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:   # Tarjan; the graph is small, recursion is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    cycles = []
    for component in components:
        members, start = set(component), component[0]
        # shortest way back to start inside the component (breadth first)
        parent: dict[str, str | None] = {start: None}
        frontier, found = [start], None
        while frontier and found is None:
            nxt = []
            for v in frontier:
                for w in sorted(graph[v] & members):
                    if w == start:
                        found = v
                        break
                    if w not in parent:
                        parent[w] = v
                        nxt.append(w)
                if found is not None:
                    break
            frontier = nxt
        path = [start]
        v = found
        while v is not None and v != start:
            path.append(v)
            v = parent[v]
        cycles.append([start] + path[1:][::-1] + [start])
    return cycles


def test_the_project_import_graph_has_no_cycle():
    graph = import_graph()
    assert len(graph) > 60 and sum(map(len, graph.values())) > 60, 'the graph lost its modules or edges'
    cycles = find_cycles(graph)
    assert not cycles, 'import cycles (module-level imports):\n' + '\n'.join(' -> '.join(c) for c in cycles)


def test_relative_imports_resolve_to_project_modules():
    graph = import_graph()
    # ``from .protocol import RunSpec`` in a subpackage module, ``from ...geometry import Pose`` two levels up
    assert 'echoposed_ros.eval.guidance.protocol' in graph['echoposed_ros.eval.guidance.loop']
    assert 'echoposed_ros.geometry' in graph['echoposed_ros.eval.guidance.loop']
    # ``from . import so3`` names a submodule; a package __init__ is its own node
    assert 'echoposed_ros.geometry.so3' in graph['echoposed_ros.geometry.ensemble']
    assert 'echoposed_ros.geometry.ensemble' in graph['echoposed_ros.geometry']
    # ``from . import TrainingError``: a name of the package's __init__
    assert 'echoposed_ros.training' in graph['echoposed_ros.training.config']


@pytest.mark.parametrize(('graph', 'expected'), [
    ({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}, [['a', 'b', 'c', 'a']]),
    ({'a': {'b'}, 'b': set(), 'c': {'a', 'b'}}, []),
    ({'a': {'b', 'c'}, 'b': {'a'}, 'c': {'d'}, 'd': {'c'}}, [['c', 'd', 'c'], ['a', 'b', 'a']]),
])
def test_find_cycles_names_one_cycle_per_knot(graph, expected):
    assert sorted(find_cycles(graph)) == sorted(expected)


def test_type_checking_and_function_imports_are_left_out(tmp_path):
    tree = ast.parse('from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\nelse:\n    import b\n'
                     'def f():\n    import c\nclass K:\n    import d\ntry:\n    import e\nexcept ImportError:\n'
                     '    import f\n')
    names = [alias.name for node in _load_time_imports(tree.body) if isinstance(node, ast.Import)
             for alias in node.names]
    assert names == ['b', 'd', 'e', 'f']
