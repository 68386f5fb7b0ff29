"""Build communication graphs from strings like ``star(hub=0)`` and route messages on them.

Edges carry cheap talk only; actions and payoffs are revealed to everyone. In a
directed graph an edge ``u -> v`` means v hears u. An undirected edge works both ways.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import networkx as nx

from stagbench.errors import TopologyError
from stagbench.records import Disclosure
from stagbench.registry import Registry


@dataclass(frozen=True)
class TopologyView:
    """What one agent is told about the network (explicit disclosure only)."""

    can_reach: tuple[int, ...]
    hears_from: tuple[int, ...]


Builder = Callable[..., nx.Graph]


@dataclass(frozen=True)
class TopologyKind:
    """A named graph family: ``builder(n_players, **params)`` returns the graph."""

    name: str
    builder: Builder
    description: str


TOPOLOGIES: Registry[TopologyKind] = Registry("topology", TopologyError)


def topology(
    name: str, description: str, aliases: tuple[str, ...] = ()
) -> Callable[[Builder], Builder]:
    """Register a graph builder under ``name``: ``@topology("ring", "a cycle")``."""

    def register(builder: Builder) -> Builder:
        TOPOLOGIES.register(name, TopologyKind(name, builder, description), aliases)
        return builder

    return register


def _hubbed_star(n: int, hub: int = 0, directed: bool = False, direction: str = "out") -> nx.Graph:
    if not 0 <= hub < n:
        raise TopologyError(f"star hub {hub} is not a seat (0..{n - 1})")
    g: nx.Graph = nx.DiGraph() if directed else nx.Graph()
    g.add_nodes_from(range(n))
    if direction not in ("out", "in", "both"):
        raise TopologyError(f"star direction must be out, in or both, not {direction!r}")
    for leaf in range(n):
        if leaf == hub:
            continue
        if not directed or direction in ("out", "both"):
            g.add_edge(hub, leaf)
        if directed and direction in ("in", "both"):
            g.add_edge(leaf, hub)
    return g


def _directed_cycle(n: int) -> nx.Graph:
    return nx.cycle_graph(n, create_using=nx.DiGraph)


def _directed_path(n: int) -> nx.Graph:
    return nx.path_graph(n, create_using=nx.DiGraph)


def _directed_complete(n: int) -> nx.Graph:
    return nx.complete_graph(n, create_using=nx.DiGraph)


def _erdos_renyi(n: int, p: float = 0.5, seed: int = 0, directed: bool = False) -> nx.Graph:
    if not 0.0 <= p <= 1.0:
        raise TopologyError(f"erdos_renyi p must be in [0, 1], not {p}")
    return nx.gnp_random_graph(n, p, seed=seed, directed=directed)


def _small_world(n: int, k: int = 2, p: float = 0.1, seed: int = 0) -> nx.Graph:
    if k >= n:
        raise TopologyError(f"small_world k={k} must be below the number of players ({n})")
    return nx.watts_strogatz_graph(n, k, p, seed=seed)


@topology("complete", "everyone hears everyone", aliases=("broadcast",))
def _complete(n: int) -> nx.Graph:
    return nx.complete_graph(n)


@topology("ring", "a cycle: each player hears its two neighbours")
def _ring(n: int) -> nx.Graph:
    return nx.cycle_graph(n)


@topology("line", "a path: the two ends hear one player", aliases=("path",))
def _line(n: int) -> nx.Graph:
    return nx.path_graph(n)


@topology("star", "a hub (default seat 0) hears and reaches every leaf")
def _star(n: int, hub: int = 0) -> nx.Graph:
    return _hubbed_star(n, hub)


@topology("empty", "no cheap talk reaches anyone")
def _empty(n: int) -> nx.Graph:
    return nx.empty_graph(n)


topology("erdos_renyi", "random graph G(n, p) with a seed")(_erdos_renyi)
topology("small_world", "Watts-Strogatz ring lattice with rewiring")(_small_world)
topology("directed_complete", "every ordered pair")(_directed_complete)
topology("directed_ring", "u -> u+1 around the ring")(_directed_cycle)
topology("directed_line", "u -> u+1 along a path")(_directed_path)


@topology("directed_star", "hub -> leaves (direction=out), leaves -> hub (in), or both")
def _directed_star(n: int, hub: int = 0, direction: str = "out") -> nx.Graph:
    return _hubbed_star(n, hub, True, direction)


@topology("directed_erdos_renyi", "random directed graph G(n, p) with a seed")
def _directed_erdos_renyi(n: int, p: float = 0.5, seed: int = 0) -> nx.Graph:
    return _erdos_renyi(n, p, seed, directed=True)


class Topology:
    """A communication graph over seats ``0..n-1`` with message routing along its edges."""

    def __init__(self, graph: nx.Graph, n_players: int, name: str | None = None) -> None:
        nodes = set(graph.nodes)
        expected = set(range(n_players))
        if nodes != expected:
            missing = sorted(expected - nodes, key=str)
            extra = sorted(nodes - expected, key=str)
            raise TopologyError(
                f"graph nodes must be exactly the seats 0..{n_players - 1}; "
                f"missing {missing}, unexpected {extra}. Relabel the graph "
                "(networkx.convert_node_labels_to_integers) or change n_players."
            )
        loops = [u for u, v in graph.edges if u == v]
        if loops:
            raise TopologyError(f"self-loops are not allowed (seats {sorted(loops)})")
        self.graph = graph
        self.n_players = n_players
        self.directed = graph.is_directed()
        self.name = name or type(graph).__name__
        # Precompute routing: seat -> sorted receivers / senders.
        if self.directed:
            self._out = {s: tuple(sorted(graph.successors(s))) for s in range(n_players)}
            self._in = {s: tuple(sorted(graph.predecessors(s))) for s in range(n_players)}
        else:
            self._out = {s: tuple(sorted(graph.neighbors(s))) for s in range(n_players)}
            self._in = self._out

    def receivers(self, sender: int) -> tuple[int, ...]:
        """Seats that hear what ``sender`` says."""
        return self._out[sender]

    def senders(self, receiver: int) -> tuple[int, ...]:
        """Seats whose messages ``receiver`` hears."""
        return self._in[receiver]

    def view(self, seat: int, disclosure: Disclosure) -> TopologyView | None:
        """What ``seat`` is told about the network: nothing when the disclosure is silent."""
        if disclosure is Disclosure.SILENT:
            return None
        return TopologyView(can_reach=self._out[seat], hears_from=self._in[seat])

    def edges(self) -> list[tuple[int, int]]:
        """Directed (sender, receiver) pairs, for the transcript."""
        return sorted((u, v) for u in range(self.n_players) for v in self._out[u])


def build_topology(spec: str | nx.Graph, n_players: int) -> Topology:
    """A topology from a string such as ``ring`` or ``erdos_renyi(p=0.5,seed=1)``, or a graph."""
    if isinstance(spec, nx.Graph):
        return Topology(spec, n_players)
    try:
        graph = TOPOLOGIES.call(spec, lambda kind: kind.builder, n_players)
    except nx.NetworkXError as exc:
        raise TopologyError(f"cannot build topology {spec!r}: {exc}") from exc
    return Topology(graph, n_players, name=spec.strip())
