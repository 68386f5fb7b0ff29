"""Custom graphs in specs: an inline edge list and a graph file (GraphML, GML, edge list),
checked against the players, usable in ``[factors] topologies``."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import pytest

from stagbench.errors import SpecError, TopologyError
from stagbench.records import read_transcript
from stagbench.runs.spec import load_spec, parse_spec
from stagbench.testing import check_topology
from stagbench.topologies import build_topology

from analysis_helpers import run_spec

SPEC = """
name = "graphs"
seed = 4
[game]
n_players = {n}
rounds = 2
[factors]
models = ["scripted/tit-for-tat"]
topologies = [{topologies}]
"""


def _spec(topologies: str, n: int = 4) -> str:
    return SPEC.format(topologies=topologies, n=n)


def test_an_inline_edge_list_routes_messages() -> None:
    topo = build_topology("edges(pairs='0-1 1-2 2-0 3-2')", 4)
    assert not topo.directed
    assert topo.receivers(2) == (0, 1, 3) and topo.receivers(3) == (2,)
    labelled = build_topology("edges(pairs='P1-P2 P2-P3 P3-P1 P4-P3')", 4)
    assert labelled.edges() == topo.edges()
    directed = build_topology("edges(pairs='0>1 1->2 2>0 3')", 4)
    assert directed.directed and directed.receivers(0) == (1,) and directed.senders(0) == (2,)
    assert directed.receivers(3) == () and directed.senders(3) == ()
    as_list = build_topology("edges(pairs=[[0,1],[1,2],[2,0],[3]], directed=True)", 4)
    assert as_list.edges() == directed.edges()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("edges(pairs='0-1 1-2')", r"leaves out seat\(s\) \[3\]"),
        ("edges(pairs='0-1 1-2 2-3 3-4')", r"names seat\(s\) \[4\], but the game has 4 players"),
        ("edges(pairs='P1-P2 P2-P3 P3-P4 P4-P5')", r"names seat\(s\) \[4\]"),
        ("edges(pairs='0-1 1>2 2-3')", "mixes u-v"),
        ("edges(pairs='P1-P2 2-3 0-1')", "mixes player labels"),
        ("edges(pairs='0-1 1-1 2-3')", "self-loops"),
        ("edges(pairs='a-b c-d')", "node 'a' is not a seat"),
        ("edges(pairs='0--1')", "cannot read edge"),
        ("edges(pairs=3)", "takes a quoted list"),
        ("edges(pairs=0-1)", r"leaves out seat\(s\) \[2, 3\]"),  # unquoted reads the same
        ("edges", "pairs"),
    ],
)
def test_edge_lists_are_checked_against_the_players(spec: str, message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        build_topology(spec, 4)


def _write_files(folder: Path) -> None:
    g = nx.Graph()
    g.add_edges_from([("P1", "P2"), ("P2", "P3"), ("P3", "P1"), ("P3", "P4"), ("P4", "P5"),
                      ("P5", "P6"), ("P6", "P4")])  # fmt: skip
    nx.write_graphml(g, folder / "bowtie.graphml")
    d = nx.DiGraph()
    d.add_edges_from([(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 0)])
    nx.write_graphml(d, folder / "cycle.graphml")
    nx.write_gml(nx.relabel_nodes(g, {f"P{i}": str(i - 1) for i in range(1, 7)}),
                 folder / "bowtie.gml")  # fmt: skip
    (folder / "chain.edgelist").write_text("# a chain and a loner\n0 1\n1,2\n2 3\n3 4\n5\n")


def test_graph_files_of_each_format(tmp_path: Path) -> None:
    _write_files(tmp_path)
    bowtie = build_topology(f"graph_file(path='{tmp_path / 'bowtie.graphml'}')", 6)
    assert not bowtie.directed and bowtie.receivers(2) == (0, 1, 3)
    gml = build_topology(f"graph_file(path='{tmp_path / 'bowtie.gml'}')", 6)
    assert gml.edges() == bowtie.edges()
    cycle = build_topology(f"graph_file(path='{tmp_path / 'cycle.graphml'}')", 6)
    assert cycle.directed and cycle.receivers(5) == (0,) and cycle.senders(5) == (4,)
    chain = build_topology(f"graph_file(path='{tmp_path / 'chain.edgelist'}',directed=True)", 6)
    assert chain.directed and chain.receivers(3) == (4,) and chain.senders(3) == (2,)
    assert chain.receivers(5) == () and chain.senders(5) == ()
    with pytest.raises(TopologyError, match=r"but the game has 5 players"):
        build_topology(f"graph_file(path='{tmp_path / 'bowtie.graphml'}')", 5)
    with pytest.raises(TopologyError, match="graph file not found"):
        build_topology(f"graph_file(path='{tmp_path / 'nope.graphml'}')", 6)
    (tmp_path / "bad.graphml").write_text("<graphml><oops")
    with pytest.raises(TopologyError, match="cannot read graph file"):
        build_topology(f"graph_file(path='{tmp_path / 'bad.graphml'}')", 6)
    (tmp_path / "wide.edgelist").write_text("0 1 2\n")
    with pytest.raises(TopologyError, match="expected 'u v' or one seat"):
        build_topology(f"graph_file(path='{tmp_path / 'wide.edgelist'}')", 3)


def test_custom_graphs_pass_the_topology_conformance_suite(tmp_path: Path) -> None:
    _write_files(tmp_path)
    check_topology("edges(pairs='0-1 1-2 2-0 3-2')")
    check_topology("edges(pairs='0>1 1>2 2>0 3')")
    check_topology(f"graph_file(path='{tmp_path / 'cycle.graphml'}')")
    check_topology(f"graph_file(path='{tmp_path / 'chain.edgelist'}')")


def test_a_spec_reads_graph_files_beside_it_and_keeps_their_edges(tmp_path: Path) -> None:
    _write_files(tmp_path)
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(
        _spec('"graph_file(path=\'bowtie.graphml\')", "edges(pairs=\'0>1 1>2 2>0 3>4 4>5 5>3\')",'
              '"graph_file(path=chain.edgelist,directed=True)"', n=6)
    )  # fmt: skip
    spec, text = load_spec(spec_path)
    topologies = [t.topology for t in spec.trials()]
    assert topologies == [
        "edges(pairs='0-1 0-2 1-2 2-3 3-4 3-5 4-5',name='bowtie')",
        "edges(pairs='0>1 1>2 2>0 3>4 4>5 5>3')",
        "edges(pairs='0>1 1>2 2>3 3>4 5',name='chain')",
    ]
    run = run_spec(text.replace("bowtie.graphml", str(tmp_path / "bowtie.graphml"))
                   .replace("chain.edgelist", f"'{tmp_path / 'chain.edgelist'}'"),
                   tmp_path / "run")  # fmt: skip
    headers = [read_transcript(p).header for p in sorted((run / "transcripts").glob("*.jsonl"))]
    edges = {h.trial.topology: [tuple(e) for e in h.edges] for h in headers}
    assert (2, 3) in edges[topologies[0]] and (3, 2) in edges[topologies[0]]
    assert (3, 4) in edges[topologies[2]] and (4, 3) not in edges[topologies[2]]
    # The trial carries the graph, not the path: the same file elsewhere is the same trial,
    # and a changed file is a new one.
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    _write_files(moved)
    (moved / "spec.toml").write_text(spec_path.read_text())
    assert [t.trial_id for t in load_spec(moved / "spec.toml")[0].trials()] == [
        t.trial_id for t in spec.trials()
    ]
    (moved / "chain.edgelist").write_text("0 1\n1 2\n2 3\n3 4\n4 5\n")
    changed = load_spec(moved / "spec.toml")[0].trials()
    assert changed[2].trial_id != spec.trials()[2].trial_id
    assert changed[0].trial_id == spec.trials()[0].trial_id


def test_a_spec_with_a_bad_graph_file_is_a_clear_error(tmp_path: Path) -> None:
    _write_files(tmp_path)
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(_spec("\"graph_file(path='bowtie.graphml')\"", n=5))
    with pytest.raises(SpecError, match=r"names seat\(s\) \[5\], but the game has 5 players"):
        load_spec(spec_path)
    spec_path.write_text(_spec("\"graph_file(path='missing.graphml')\""))
    with pytest.raises(SpecError, match="graph file not found"):
        load_spec(spec_path)
    spec_path.write_text(_spec("\"graph_file(path='bowtie.graphml',colour=red)\"", n=6))
    with pytest.raises(SpecError, match="unknown parameter"):
        load_spec(spec_path)
    with pytest.raises(SpecError, match=r"leaves out seat\(s\) \[3\]"):
        parse_spec(_spec("\"edges(pairs='0-1 1-2')\""))
