from pathlib import Path

import networkx as nx
import pytest

from stagbench.errors import TopologyError
from stagbench.topologies import Disclosure, build_topology
from stagbench.topologies.graph import TOPOLOGIES, topology

# Hand-written (sender, receiver) pairs for 4 players.
EXPECTED_EDGES = {
    "complete": [(u, v) for u in range(4) for v in range(4) if u != v],
    "ring": [(0, 1), (0, 3), (1, 0), (1, 2), (2, 1), (2, 3), (3, 0), (3, 2)],
    "line": [(0, 1), (1, 0), (1, 2), (2, 1), (2, 3), (3, 2)],
    "star(hub=0)": [(0, 1), (0, 2), (0, 3), (1, 0), (2, 0), (3, 0)],
    "star(hub=2)": [(0, 2), (1, 2), (2, 0), (2, 1), (2, 3), (3, 2)],
    "empty": [],
    "directed_ring": [(0, 1), (1, 2), (2, 3), (3, 0)],
    "directed_line": [(0, 1), (1, 2), (2, 3)],
    "directed_star(hub=1)": [(1, 0), (1, 2), (1, 3)],
    "directed_star(hub=1,direction=in)": [(0, 1), (2, 1), (3, 1)],
}


@pytest.mark.parametrize("spec", sorted(EXPECTED_EDGES))
def test_edges(spec: str) -> None:
    assert build_topology(spec, 4).edges() == EXPECTED_EDGES[spec]


def test_directed_means_receiver_hears_sender() -> None:
    t = build_topology("directed_ring", 4)
    assert t.receivers(0) == (1,)
    assert t.senders(0) == (3,)
    assert t.directed


def test_random_graphs_are_seeded() -> None:
    a = build_topology("erdos_renyi(p=0.5,seed=1)", 6).edges()
    assert a == build_topology("erdos_renyi(p=0.5, seed=1)", 6).edges()
    assert a != build_topology("erdos_renyi(p=0.5,seed=2)", 6).edges()
    sw = build_topology("small_world(k=2,p=0.1,seed=1)", 6)
    assert len(sw.edges()) == 12  # 6 nodes x 2 neighbours, both directions
    d = build_topology("directed_erdos_renyi(p=0.5,seed=3)", 5)
    assert d.directed


def test_disclosure_views() -> None:
    t = build_topology("star(hub=0)", 4)
    explicit = t.view(2, Disclosure.EXPLICIT)
    assert explicit is not None
    assert explicit.can_reach == (0,) and explicit.hears_from == (0,)
    assert t.view(2, Disclosure.SILENT) is None
    d = build_topology("directed_ring", 4).view(0, Disclosure.EXPLICIT)
    assert d is not None and d.can_reach == (1,) and d.hears_from == (3,)


def test_graph_passed_in_code() -> None:
    g = nx.DiGraph([(0, 1), (1, 0), (2, 1)])
    t = build_topology(g, 3)
    assert t.senders(1) == (0, 2)


@pytest.mark.parametrize(
    "spec,n,match",
    [
        ("hexagon", 4, "unknown topology 'hexagon'"),
        ("star(hub=7)", 4, "hub 7 is not a seat"),
        ("star(center=1)", 4, "bad parameters"),
        ("erdos_renyi(p=2)", 4, "p must be in"),
        ("small_world(k=5)", 4, "k=5 must be below"),
        ("small_world(k=3)", 6, "k=3 must be even"),
        ("small_world(k=2.5)", 6, "k must be a whole number, not 2.5"),
        ("ring(", 4, "cannot parse"),
        ("star(hub)", 4, "not key=value"),
    ],
)
def test_bad_topology_strings(spec: str, n: int, match: str) -> None:
    with pytest.raises(TopologyError, match=match):
        build_topology(spec, n)


@pytest.mark.parametrize(("k", "n"), [(3, 4), (3, 6), (5, 8), (7, 10)])
def test_an_odd_small_world_k_is_refused_not_built_as_k_minus_one(k: int, n: int) -> None:
    """networkx joins each node to its k // 2 neighbours on each side: an odd k would be
    built as k - 1, so it is refused, naming the even k on either side that fits."""
    with pytest.raises(TopologyError) as caught:
        build_topology(f"small_world(k={k},p=0)", n)
    msg = str(caught.value)
    assert f"small_world k={k} must be even" in msg and f"built as k={k - 1}" in msg, msg
    assert f"give k={k - 1}" in msg and (f"or k={k + 1}" in msg) == (k + 1 < n), msg
    # The even k on either side is built as asked: n * k / 2 edges before rewiring.
    for even in (k - 1, k + 1):
        if even < n:
            built = build_topology(f"small_world(k={even},p=0)", n)
            assert built.graph.number_of_edges() == n * even // 2


@pytest.mark.parametrize("k", ["4.0", "2.5", "'4'"])
def test_a_small_world_k_that_is_not_a_whole_number_is_refused(k: str) -> None:
    with pytest.raises(TopologyError, match="must be a whole number"):
        build_topology(f"small_world(k={k})", 6)


def test_graph_nodes_must_match_players() -> None:
    with pytest.raises(TopologyError, match="missing \\[3\\]"):
        build_topology(nx.path_graph(3), 4)
    with pytest.raises(TopologyError, match="unexpected \\['a'\\]"):
        build_topology(nx.Graph([(0, 1), (1, 2), (2, "a")]), 3)
    with pytest.raises(TopologyError, match="self-loops"):
        build_topology(nx.Graph([(0, 1), (1, 1)]), 2)


def test_a_pure_topology_is_built_once_and_frozen() -> None:
    """Trials share a built-in topology per (string, players): the same object, its graph
    frozen so no trial can change another's network."""
    a = build_topology("ring", 5)
    assert build_topology("ring", 5) is a
    assert build_topology("ring", 6) is not a  # another number of players
    assert build_topology(" ring", 5).edges() == a.edges()
    with pytest.raises(nx.NetworkXError):
        a.graph.add_edge(0, 2)
    assert a.edges() == build_topology("ring", 5, share=False).edges()
    fresh = build_topology("ring", 5, share=False)
    assert fresh is not a and not nx.is_frozen(fresh.graph)


def test_graph_files_and_plugin_kinds_are_built_every_time(tmp_path: Path) -> None:
    """A graph file is read anew (it may change), a kind not declared pure is built every
    time, and a kind registered again (a plugin overriding a built-in) replaces what was
    shared under its name."""
    path = tmp_path / "net.edgelist"
    path.write_text("0 1\n1 2\n2 3\n")
    spec = f"graph_file(path='{path}')"
    assert build_topology(spec, 4).edges() == [(0, 1), (1, 0), (1, 2), (2, 1), (2, 3), (3, 2)]
    path.write_text("0 1\n2\n3\n")
    assert build_topology(spec, 4).edges() == [(0, 1), (1, 0)]

    calls = []

    def counted(n: int) -> nx.Graph:
        calls.append(n)
        return nx.empty_graph(n)

    topology("test_counted", "counts its builds")(counted)
    build_topology("test_counted", 3)
    build_topology("test_counted", 3)
    assert calls == [3, 3]

    shared = build_topology("line", 4)
    original = TOPOLOGIES.get("line")
    try:
        topology("line", "a line turned into a ring by a plugin", pure=True)(nx.cycle_graph)
        assert build_topology("line", 4).edges() == build_topology("ring", 4).edges()
    finally:
        TOPOLOGIES.register("line", original, ("path",))
    assert build_topology("line", 4).edges() == shared.edges()
