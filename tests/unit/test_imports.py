"""The packages depend on each other in one direction: no import cycle between top-level packages, and
the read side (projections, serving) never reaches into the processors."""
from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file() and p.name != "tests")


def imports_between_packages() -> nx.DiGraph:
    graph = nx.DiGraph()
    graph.add_nodes_from(PACKAGES)
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    target = name.split(".")[0]
                    if target in PACKAGES and target != package:
                        graph.add_edge(package, target, where=str(path.relative_to(ROOT)))
    return graph


def test_the_packages_import_each_other_without_cycles():
    graph = imports_between_packages()
    assert {"domain", "ingest", "processors", "projections", "serving", "ml"} <= set(PACKAGES)
    cycles = [[f"{a} -> {b} ({graph.edges[a, b]['where']})" for a, b in zip(cycle, cycle[1:] + cycle[:1])]
              for cycle in nx.simple_cycles(graph)]
    assert cycles == []


def test_the_read_side_never_imports_the_processors():
    graph = imports_between_packages()
    for package in ("projections", "serving"):
        assert not nx.has_path(graph, package, "processors"), package
    assert list(graph.successors("domain")) == []  # the domain imports no other package of ours
