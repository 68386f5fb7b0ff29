"""Where adversaries sit: by seat, at random, or by graph centrality (hub, leaf)."""

from __future__ import annotations

import random
from collections.abc import Sequence

import networkx as nx

from stagbench.errors import StrategyError
from stagbench.games import player_label
from stagbench.topologies import Topology


def _degree(topo: Topology) -> dict[int, float]:
    g = topo.graph
    # Influence in cheap talk is reach: out-degree on a directed graph.
    if topo.directed:
        return {n: float(d) for n, d in g.out_degree()}
    return {n: float(d) for n, d in g.degree()}


def _betweenness(topo: Topology) -> dict[int, float]:
    return {int(k): float(v) for k, v in nx.betweenness_centrality(topo.graph).items()}


PLACEMENTS = ("random", "hub", "leaf", "betweenness")


def _ranked(scores: dict[int, float], rng: random.Random, highest: bool) -> list[int]:
    # Ties are broken by a seeded shuffle so no seat is favoured across trials.
    seats = list(scores)
    rng.shuffle(seats)
    return sorted(seats, key=lambda s: -scores[s] if highest else scores[s])


def place(
    placement: str | Sequence[int], topo: Topology, count: int, rng: random.Random
) -> tuple[int, ...]:
    """Seats for ``count`` adversaries.

    ``hub``: highest degree (out-degree if directed); ``leaf``: lowest; ``betweenness``:
    highest betweenness centrality; ``random``: uniform; a list of ints: those seats.
    """
    n = topo.n_players
    if not 0 <= count <= n:
        raise StrategyError(f"cannot seat {count} adversaries among {n} players")
    if count == 0:
        return ()
    if not isinstance(placement, str):
        seats = tuple(int(s) for s in placement)
        if len(seats) != count or len(set(seats)) != count or not all(0 <= s < n for s in seats):
            raise StrategyError(
                f"placement {list(seats)} must name {count} distinct seats in 0..{n - 1}"
            )
        return tuple(sorted(seats))
    if placement == "random":
        return tuple(sorted(rng.sample(range(n), count)))
    if placement == "hub":
        order = _ranked(_degree(topo), rng, highest=True)
    elif placement == "leaf":
        order = _ranked(_degree(topo), rng, highest=False)
    elif placement == "betweenness":
        order = _ranked(_betweenness(topo), rng, highest=True)
    else:
        raise StrategyError(
            f"unknown placement {placement!r}; use one of {', '.join(PLACEMENTS)} "
            "or a list of seats"
        )
    return tuple(sorted(order[:count]))


def _may_pick(scores: dict[int, float], count: int, highest: bool) -> tuple[set[int], set[int]]:
    """The seats a placement ranking by ``scores`` may give one of ``count`` adversaries
    (the ``count`` best and every seat tied with the last of them: ties are drawn), and
    those it always gives one."""
    edge = sorted(scores.values(), reverse=highest)[count - 1]
    may = {s for s, v in scores.items() if (v >= edge if highest else v <= edge)}
    if len(may) == count:
        return may, may
    return may, {s for s in may if scores[s] != edge}


def _seats(seats: set[int]) -> str:
    names = [player_label(s) for s in sorted(seats)]
    if len(names) > 6:
        return f"{', '.join(names[:5])} and {len(names) - 5} more"
    return ", ".join(names)


def placement_warnings(placement: str | Sequence[int], topo: Topology, count: int) -> list[str]:
    """What a placement by centrality does on ``topo`` that its name does not say: it may
    seat an adversary where it has no edge at all (it can neither send nor hear), or, on a
    directed graph, ``hub``/``leaf`` by out-degree pick other seats than by in-degree. The
    rule itself stays as it is (``place``); these are for ``validate`` to warn of."""
    if not isinstance(placement, str) or placement not in PLACEMENTS[1:]:
        return []
    if not 0 < count <= topo.n_players:
        return []
    out = []
    g = topo.graph
    highest = placement != "leaf"
    lone = {int(s) for s in g.nodes if g.degree(s) == 0}
    if lone and len(lone) < topo.n_players:  # (on a graph without edges, every seat is)
        scores = _betweenness(topo) if placement == "betweenness" else _degree(topo)
        at = lone & _may_pick(scores, count, highest)[0]
        if at:
            out.append(
                f"placement={placement} can seat an adversary at {_seats(at)}, with no edge at "
                "all: it can neither send nor hear a message"
            )
    if topo.directed and placement in ("hub", "leaf"):
        by_out = _may_pick(_degree(topo), count, highest)
        by_in = _may_pick({int(n): float(d) for n, d in g.in_degree()}, count, highest)
        by_all = _may_pick({int(n): float(d) for n, d in g.degree()}, count, highest)
        parts = _differ(by_out, by_in)
        # Where out-degree picks what the graph's shape (in- and out-edges together) does,
        # the name means what it says: the centre of an outward star is its hub.
        if parts and _differ(by_out, by_all):
            out.append(
                f"placement={placement} ranks seats by out-degree on a directed graph (whom "
                f"a seat reaches), not by in-degree (whom it hears): {'; '.join(parts)} by "
                "in-degree"
            )
    return out


def _differ(ours: tuple[set[int], set[int]], theirs: tuple[set[int], set[int]]) -> list[str]:
    """How the seats one ranking may and must pick (``_may_pick``) differ from another's,
    in words; empty when they could agree."""
    (may, sure), (may_x, sure_x) = ours, theirs
    parts = []
    if sure_x - may:
        parts.append(f"it never seats {_seats(sure_x - may)}, which it always would")
    if sure - may_x:
        parts.append(f"it always seats {_seats(sure - may_x)}, which it never would")
    if not parts and not may & may_x:
        parts.append(f"it seats {_seats(may)}, where it would seat {_seats(may_x)}")
    return parts
