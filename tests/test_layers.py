"""The house's layering, checked from the source: every import of a stagbench module points
down the layers of DESIGN.md, and no modules import each other in a circle.

Bottom up: the errors, the registry helper and the records; then games and topologies;
agents; adversaries; runs. Analysis reads records (and may use the pure game engine);
the command line and the conformance suites sit on top.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parent.parent

#: what each part of the house may import besides itself
#: (``stagbench`` itself, the package's __init__, holds only the version: anyone may read it)
MAY_IMPORT: dict[str, set[str]] = {
    "stagbench": set(),
    "stagbench.errors": {"stagbench"},
    "stagbench.registry": {"stagbench", "stagbench.errors"},
    "stagbench.records": {"stagbench", "stagbench.errors"},
}
_BASE = {"stagbench", "stagbench.errors", "stagbench.registry", "stagbench.records"}
MAY_IMPORT["stagbench.games"] = set(_BASE)
MAY_IMPORT["stagbench.topologies"] = set(_BASE)
MAY_IMPORT["stagbench.agents"] = _BASE | {"stagbench.games", "stagbench.topologies"}
MAY_IMPORT["stagbench.adversaries"] = MAY_IMPORT["stagbench.agents"] | {"stagbench.agents"}
MAY_IMPORT["stagbench.runs"] = MAY_IMPORT["stagbench.adversaries"] | {"stagbench.adversaries"}
MAY_IMPORT["stagbench.analysis"] = _BASE | {"stagbench.games"}
MAY_IMPORT["stagbench.viewer"] = _BASE | {"stagbench.games"}
TOP = {"stagbench.cli", "stagbench.testing", "stagbench.__main__"}


def _package_dirs() -> dict[str, Path]:
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {pkg: ROOT / path for pkg, path in conf["package-dir"].items()}


def _modules() -> dict[str, Path]:
    """Module name -> file, for every module the package installs."""
    dirs = _package_dirs()
    out: dict[str, Path] = {}
    for pkg, folder in dirs.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([pkg, *parts])
            # a subfolder mapped elsewhere (stagbench/games) belongs to its own mapping
            if any(
                name.startswith(other + ".") or name == other
                for other in dirs
                if other != pkg and other.startswith(pkg + ".") and (ROOT / dirs[other]) != folder
            ):
                continue  # fmt: skip
            out[name] = path
    return out


def _imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_pkg else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return {f for f in found if f == "stagbench" or f.startswith("stagbench.")}


def _part(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def _graph() -> nx.DiGraph:
    modules = _modules()
    g = nx.DiGraph()
    for name, path in modules.items():
        g.add_node(name)
        for target in _imports(path, name):
            # an import of a name inside a module points at that module
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in modules and target != name:
                g.add_edge(name, target)
    return g


def test_the_package_is_mapped_from_the_root_folders() -> None:
    modules = _modules()
    for part in ("games", "topologies", "agents", "adversaries", "runs", "analysis"):
        assert f"stagbench.{part}" in modules
        assert modules[f"stagbench.{part}"] == ROOT / part / "__init__.py"
    assert "stagbench.records" in modules and "stagbench.cli" in modules


def test_every_part_is_placed_in_a_layer() -> None:
    parts = {_part(m) for m in _modules()}
    unplaced = parts - set(MAY_IMPORT) - TOP
    assert not unplaced, f"new parts need a place in MAY_IMPORT or TOP: {sorted(unplaced)}"


def test_no_import_points_up() -> None:
    upward = []
    for a, b in _graph().edges:
        pa, pb = _part(a), _part(b)
        if pa == pb or pa in TOP:
            continue
        if pb not in MAY_IMPORT.get(pa, set()):
            upward.append(f"{a} -> {b}")
    assert not upward, "imports that point up the layers:\n" + "\n".join(sorted(upward))


def test_no_import_circle() -> None:
    cycles = list(nx.simple_cycles(_graph()))
    assert not cycles, "modules importing each other in a circle: " + "; ".join(
        " -> ".join([*c, c[0]]) for c in cycles[:5]
    )


def test_agents_never_import_adversaries_and_runs_never_import_analysis() -> None:
    g = _graph()
    for a, b in g.edges:
        assert not (_part(a) == "stagbench.agents" and _part(b) == "stagbench.adversaries")
        assert not (_part(a) == "stagbench.runs" and _part(b) == "stagbench.analysis")


@pytest.mark.parametrize("bad", [("stagbench.games", "stagbench.agents")])
def test_the_check_would_catch_an_upward_import(bad: tuple[str, str]) -> None:
    low, high = bad
    assert high not in MAY_IMPORT[low]
