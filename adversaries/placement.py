"""Where adversaries sit: by seat, at random, or by graph centrality (hub, leaf)."""

from __future__ import annotations

import random
from collections.abc import Sequence

import networkx as nx

from stagbench.errors import StrategyError
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
