"""Build communication graphs from strings like ``star(hub=0)`` and route messages on them.

Edges carry cheap talk only; actions and payoffs are revealed to everyone. In a
directed graph an edge ``u -> v`` means v hears u. An undirected edge works both ways.

Custom graphs: ``edges(pairs='0-1 1-2 2-0 3')`` lists edges inline (``u>v`` directed, a
lone seat is a player with no edge), ``graph_file(path='net.graphml')`` reads GraphML,
GML or an edge list. Seats are named ``0..n-1`` or ``P1..Pn``; every seat must be named
and no other, so a graph is checked against the players.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx

from stagbench.errors import TopologyError
from stagbench.records import Disclosure
from stagbench.registry import Registry, parse_call


@dataclass(frozen=True)
class TopologyView:
    """What one agent is told about the network (explicit disclosure only)."""

    can_reach: tuple[int, ...]
    hears_from: tuple[int, ...]


Builder = Callable[..., nx.Graph]


@dataclass(frozen=True)
class TopologyKind:
    """A named graph family: ``builder(n_players, **params)`` returns the graph.

    ``example``: a call that builds it, for a family that cannot be built by its name
    alone (a required parameter); the conformance suite checks that call.

    ``pure``: the graph depends on the parameters and the number of players alone (no
    file, no unseeded randomness), so one built graph serves every trial that names it."""

    name: str
    builder: Builder
    description: str
    example: str | None = None
    pure: bool = False


TOPOLOGIES: Registry[TopologyKind] = Registry("topology", TopologyError)


def topology(
    name: str,
    description: str,
    aliases: tuple[str, ...] = (),
    example: str | None = None,
    pure: bool = False,
) -> Callable[[Builder], Builder]:
    """Register a graph builder under ``name``: ``@topology("ring", "a cycle")``; ``pure``
    when its graph depends on its parameters and the number of players alone."""

    def register(builder: Builder) -> Builder:
        kind = TopologyKind(name, builder, description, example, pure)
        TOPOLOGIES.register(name, kind, aliases)
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
    # Each player is joined to its k // 2 nearest neighbours on each side of the ring
    # before rewiring: a k below 2 gives a graph without one edge, `empty` under another
    # name, so it is refused rather than run as a small world; an odd k is refused too.
    if not isinstance(k, int):
        raise TopologyError(f"small_world k={k!r} must be a whole number (an even one, at least 2)")
    if k < 2:
        raise TopologyError(
            f"small_world k={k} adds no edge: k must be at least 2 and below the number of "
            f"players ({n}) (each player hears its k // 2 nearest neighbours on each side; "
            "for a graph without talk use `empty`)"
        )
    if k >= n:
        raise TopologyError(
            f"small_world k={k} must be below the number of players ({n}) and at least 2"
        )
    # An odd k would be silently built as k - 1 (k // 2 neighbours on each side).
    if k % 2:
        raise TopologyError(
            f"small_world k={k} must be even: each player is joined to its k // 2 nearest "
            f"neighbours on each side, so k={k} would be built as k={k - 1}; give k={k - 1}"
            + (f" or k={k + 1}" if k + 1 < n else "")
        )
    return nx.watts_strogatz_graph(n, k, p, seed=seed)


@topology("complete", "everyone hears everyone", aliases=("broadcast",), pure=True)
def _complete(n: int) -> nx.Graph:
    return nx.complete_graph(n)


@topology("ring", "a cycle: each player hears its two neighbours", pure=True)
def _ring(n: int) -> nx.Graph:
    return nx.cycle_graph(n)


@topology("line", "a path: the two ends hear one player", aliases=("path",), pure=True)
def _line(n: int) -> nx.Graph:
    return nx.path_graph(n)


@topology("star", "a hub (default seat 0) hears and reaches every leaf", pure=True)
def _star(n: int, hub: int = 0) -> nx.Graph:
    return _hubbed_star(n, hub)


@topology("empty", "no cheap talk reaches anyone", pure=True)
def _empty(n: int) -> nx.Graph:
    return nx.empty_graph(n)


topology("erdos_renyi", "random graph G(n, p) with a seed", pure=True)(_erdos_renyi)
topology("small_world", "Watts-Strogatz ring lattice with rewiring", pure=True)(_small_world)
topology("directed_complete", "every ordered pair", pure=True)(_directed_complete)
topology("directed_ring", "u -> u+1 around the ring", pure=True)(_directed_cycle)
topology("directed_line", "u -> u+1 along a path", pure=True)(_directed_path)


@topology("directed_star", "hub -> leaves (direction=out), leaves -> hub (in), or both", pure=True)
def _directed_star(n: int, hub: int = 0, direction: str = "out") -> nx.Graph:
    return _hubbed_star(n, hub, True, direction)


@topology("directed_erdos_renyi", "random directed graph G(n, p) with a seed", pure=True)
def _directed_erdos_renyi(n: int, p: float = 0.5, seed: int = 0) -> nx.Graph:
    return _erdos_renyi(n, p, seed, directed=True)


_SEAT = re.compile(r"^(?:[Pp](\d+)|(\d+))$")


def seat_of(label: object) -> int:
    """A seat from a node name: ``3`` / ``"3"`` is seat 3, ``"P4"`` is seat 3 too."""
    if isinstance(label, int) and not isinstance(label, bool):
        return label
    m = _SEAT.match(str(label).strip())
    if not m:
        raise TopologyError(
            f"node {label!r} is not a seat: name nodes 0..n-1 (as in placement=[...]) "
            "or P1..Pn (as the players are told)"
        )
    if m.group(1) and int(m.group(1)) == 0:
        raise TopologyError(
            f"node {label!r} is not a player: players are numbered from P1 (P1..Pn are seats "
            "0..n-1)"
        )
    return int(m.group(1)) - 1 if m.group(1) else int(m.group(2))


def _one_naming(labels: list[object], what: str) -> None:
    """Seat numbers (0-based) and player labels (1-based) must not be mixed: ``P2`` and
    ``2`` are different seats."""
    named = {str(x).strip()[:1].upper() == "P" for x in labels}
    if len(named) > 1:
        raise TopologyError(
            f"{what} mixes player labels (P1..Pn) and seat numbers (0..n-1): P2 is seat 1, "
            "not seat 2; use one naming"
        )


def _check_seats(nodes: set[int], n: int, what: str) -> None:
    missing = sorted(set(range(n)) - nodes)
    extra = sorted(nodes - set(range(n)))
    if extra:
        raise TopologyError(
            f"{what} names seat(s) {extra}, but the game has {n} players (seats 0..{n - 1})"
        )
    if missing:
        raise TopologyError(
            f"{what} leaves out seat(s) {missing} of {n} players: give every player, a lone "
            "seat (e.g. '3') for one with no edges"
        )


def parse_pairs(pairs: Any, directed: bool = False) -> tuple[nx.Graph, bool]:
    """The graph of an inline edge list: ``'0-1 1-2; 3'`` (``u>v`` or ``u->v`` directed)
    or ``[[0, 1], [1, 2], [3]]`` (directed when ``directed``). Returns it with whether it
    is directed."""
    links: list[tuple[int, ...]] = []
    labels: list[object] = []
    if isinstance(pairs, str):
        arrows = "->" in pairs or ">" in pairs
        undirected = bool(re.search(r"\w\s*-(?!>)\s*\w", pairs))
        if arrows and undirected:
            raise TopologyError("an edge list mixes u-v (undirected) and u>v (directed) edges")
        directed = directed or arrows
        for token in re.split(r"[\s;]+", pairs.strip()):
            if not token:
                continue
            ends = re.split(r"->|>|-", token)
            if len(ends) > 2 or any(not e for e in ends):
                raise TopologyError(f"cannot read edge {token!r}: write u-v, u>v or a lone seat")
            labels += ends
            links.append(tuple(seat_of(e) for e in ends))
    elif isinstance(pairs, list | tuple):
        for item in pairs:
            seats = item if isinstance(item, list | tuple) else [item]
            if not 1 <= len(seats) <= 2:
                raise TopologyError(f"cannot read edge {item!r}: give [u, v] or [seat]")
            labels += list(seats)
            links.append(tuple(seat_of(e) for e in seats))
    else:
        raise TopologyError(
            f"edges(pairs=...) takes a quoted list such as '0-1 1-2' or [[0,1],[1,2]], "
            f"not {pairs!r}"
        )
    _one_naming(labels, "an edge list")
    g: nx.Graph = nx.DiGraph() if directed else nx.Graph()
    for link in links:
        g.add_node(link[0])
        if len(link) == 2:
            g.add_edge(link[0], link[1])
    return g, directed


@topology(
    "edges",
    "a graph given by its edges: pairs='0-1 1-2 3' (u>v directed; P1.. or 0..)",
    example="edges(pairs='0-1 1-2 2-0 3-1')",
    pure=True,
)
def _edges(n: int, pairs: Any, directed: bool = False, name: str | None = None) -> nx.Graph:
    g, _ = parse_pairs(pairs, directed)
    _check_seats(set(g.nodes), n, f"edges({name or 'pairs'})")
    return g


def read_graph_file(path: str | Path, directed: bool | None = None) -> nx.Graph:
    """A graph from GraphML (``.graphml``/``.xml``), GML (``.gml``) or an edge list (any
    other suffix: one ``u v`` per line, ``#`` comments, a lone seat on its own line), with
    nodes renamed to seats. ``directed`` forces the kind; None keeps the file's own (an
    edge list is undirected)."""
    p = Path(path)
    suffix = p.suffix.lower()
    try:
        if suffix in (".graphml", ".xml"):
            raw: nx.Graph = nx.read_graphml(p)
        elif suffix == ".gml":
            raw = nx.read_gml(p, label="label")
        else:
            raw = nx.DiGraph() if directed else nx.Graph()
            for number, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
                tokens = re.split(r"[\s,]+", line.split("#", 1)[0].strip())
                tokens = [t for t in tokens if t]
                if not tokens:
                    continue
                if len(tokens) > 2:
                    raise TopologyError(f"{p}:{number}: expected 'u v' or one seat, not {line!r}")
                raw.add_node(tokens[0])
                if len(tokens) == 2:
                    raw.add_edge(tokens[0], tokens[1])
    except FileNotFoundError:
        raise TopologyError(f"graph file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TopologyError(f"cannot read graph file {p}: {exc}") from None
    except nx.NetworkXError as exc:
        raise TopologyError(f"cannot read graph file {p}: {exc}") from None
    except Exception as exc:  # the XML and GML parsers raise their own kinds
        if isinstance(exc, TopologyError):
            raise
        raise TopologyError(f"cannot read graph file {p}: {type(exc).__name__}: {exc}") from None
    _one_naming(list(raw.nodes), f"graph file {p}")
    mapping = {node: seat_of(node) for node in raw.nodes}
    if len(set(mapping.values())) != len(mapping):
        raise TopologyError(f"graph file {p}: two nodes name the same seat ({sorted(mapping)})")
    graph = nx.relabel_nodes(raw, mapping)
    out: nx.Graph = nx.DiGraph() if (graph.is_directed() if directed is None else directed) \
        else nx.Graph()  # fmt: skip
    out.add_nodes_from(graph.nodes)
    out.add_edges_from(graph.edges)
    return out


@topology(
    "graph_file",
    "a graph read from a file: GraphML, GML or an edge list (path=..., directed=...)",
)
def _graph_file(n: int, path: str, directed: bool | None = None) -> nx.Graph:
    graph = read_graph_file(path, directed)
    _check_seats(set(graph.nodes), n, f"graph file {path}")
    return graph


def inline_graph(graph: nx.Graph, name: str = "") -> str:
    """The ``edges(...)`` topology string of ``graph`` (nodes are seats): how a spec keeps
    a graph file's content, so its trials carry the graph and not a path."""
    arrow = ">" if graph.is_directed() else "-"
    links = sorted(
        (u, v) if graph.is_directed() else (min(u, v), max(u, v)) for u, v in graph.edges
    )
    linked = {s for e in links for s in e}
    tokens = [f"{u}{arrow}{v}" for u, v in dict.fromkeys(links)]
    tokens += [str(s) for s in sorted(graph.nodes) if s not in linked]
    label = f",name='{name}'" if name and re.fullmatch(r"[\w.-]+", name) else ""
    return f"edges(pairs='{' '.join(tokens)}'{label})"


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


#: built topologies of pure kinds by (topology string, players): (kind, topology)
_BUILT: dict[tuple[str, int], tuple[str, TopologyKind, Topology]] = {}
_MAX_BUILT = 1024


def build_topology(spec: str | nx.Graph, n_players: int, *, share: bool = True) -> Topology:
    """A topology from a string such as ``ring`` or ``erdos_renyi(p=0.5,seed=1)``, or a graph.

    A pure kind's topology (every built-in but ``graph_file``) is built once per string
    and number of players and then shared, its graph frozen (networkx raises on any change
    to it); a kind registered again later (a plugin's override) is built anew. ``share=False``
    builds a fresh one (the conformance check's second build must really build again)."""
    if isinstance(spec, nx.Graph):
        return Topology(spec, n_players)
    key = (spec, n_players)
    hit = _BUILT.get(key) if share else None
    if hit is not None and TOPOLOGIES.get(hit[0]) is hit[1]:
        return hit[2]
    name, params = parse_call(spec, TOPOLOGIES.what, TOPOLOGIES.error)
    kind = TOPOLOGIES.get(name)
    try:
        graph = TOPOLOGIES.invoke(spec, kind.builder, n_players, **params)
    except nx.NetworkXError as exc:
        raise TopologyError(f"cannot build topology {spec!r}: {exc}") from exc
    topo = Topology(graph, n_players, name=spec.strip())
    if share and kind.pure and len(_BUILT) < _MAX_BUILT:
        nx.freeze(graph)
        _BUILT[key] = (name, kind, topo)
    return topo
