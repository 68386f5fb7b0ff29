"""Build communication graphs from strings like ``star(hub=0)`` and route messages on them.

Edges carry cheap talk only; actions and payoffs are revealed to everyone. In a
directed graph an edge ``u -> v`` means v hears u. An undirected edge works both ways.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import networkx as nx

from stagbench.errors import TopologyError


class Disclosure(StrEnum):
    """``explicit``: each agent is told whom it reaches and hears; ``silent``: same routing,
    nothing said."""

    EXPLICIT = "explicit"
    SILENT = "silent"


@dataclass(frozen=True)
class TopologyView:
    """What one agent is told about the network (explicit disclosure only)."""

    can_reach: tuple[int, ...]
    hears_from: tuple[int, ...]


Builder = Callable[..., nx.Graph]

_CALL = re.compile(r"^\s*([A-Za-z_][\w-]*)\s*(?:\((.*)\))?\s*$", re.S)


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets, so ``placement=[0,1]`` stays whole."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def parse_call(text: str, what: str = "name") -> tuple[str, dict[str, Any]]:
    """Split ``name(a=1,b=0.5,c=x)`` into the name and literal keyword arguments."""
    m = _CALL.match(text)
    if not m:
        raise TopologyError(f"cannot parse {what} {text!r}: expected NAME or NAME(key=value, ...)")
    name, arg_text = m.group(1).lower().replace("-", "_"), (m.group(2) or "").strip()
    params: dict[str, Any] = {}
    if arg_text:
        for part in _split_top_level(arg_text):
            if "=" not in part:
                raise TopologyError(
                    f"cannot parse {what} {text!r}: argument {part.strip()!r} is not key=value"
                )
            key, raw = (s.strip() for s in part.split("=", 1))
            try:
                params[key] = ast.literal_eval(raw)
            except (ValueError, SyntaxError):
                params[key] = raw  # a bare word such as direction=out
    return name, params


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


BUILDERS: dict[str, Builder] = {
    "complete": lambda n: nx.complete_graph(n),
    "broadcast": lambda n: nx.complete_graph(n),
    "ring": lambda n: nx.cycle_graph(n),
    "line": lambda n: nx.path_graph(n),
    "path": lambda n: nx.path_graph(n),
    "star": lambda n, hub=0: _hubbed_star(n, hub),
    "empty": lambda n: nx.empty_graph(n),
    "erdos_renyi": _erdos_renyi,
    "small_world": _small_world,
    "directed_complete": _directed_complete,
    "directed_ring": _directed_cycle,
    "directed_line": _directed_path,
    "directed_star": lambda n, hub=0, direction="out": _hubbed_star(n, hub, True, direction),
    "directed_erdos_renyi": lambda n, p=0.5, seed=0: _erdos_renyi(n, p, seed, directed=True),
}


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
    name, params = parse_call(spec, "topology")
    builder = BUILDERS.get(name)
    if builder is None:
        raise TopologyError(f"unknown topology {name!r}; known: {', '.join(sorted(BUILDERS))}")
    try:
        graph = builder(n_players, **params)
    except TypeError as exc:
        raise TopologyError(f"bad parameters for topology {spec!r}: {exc}") from exc
    except nx.NetworkXError as exc:
        raise TopologyError(f"cannot build topology {spec!r}: {exc}") from exc
    return Topology(graph, n_players, name=spec.strip())
