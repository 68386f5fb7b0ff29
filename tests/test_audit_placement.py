"""The audit holds adversaries placed by centrality (``hub``, ``leaf``, ``betweenness``) to
seats of that centrality on the recorded graph: a role swapped between an adversary and an
honest seat of another score is found, and every seating the engine makes passes (ties,
directed graphs and asymmetric graphs included)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import networkx as nx
import pytest
from typer.testing import CliRunner

from stagbench.cli import app
from stagbench.games.audit import audit_events
from stagbench.records import read_events

Events = list[dict[str, Any]]

SPEC = """
name = "placed"
seed = 5
repetitions = 3
[game]
n_players = 5
rounds = 1
[factors]
models = ["scripted/tit-for-tat"]
topologies = ["line", "star(hub=2)", "directed-star(hub=3)", "ring",
              "edges(pairs='0-1 1-2 2-3 3-4 1-3 0-2')", "edges(pairs='0>1 1>2 2>3 1>4 4>0')",
              "erdos-renyi(p=0.5,seed=3)", "directed-line"]
adversaries = ["byzantine(count=1,placement=hub)", "byzantine(count=2,placement=hub)",
               "byzantine(count=1,placement=leaf)", "byzantine(count=2,placement=leaf)",
               "byzantine(count=1,placement=betweenness)",
               "byzantine(count=2,placement=betweenness)"]
"""


@pytest.fixture(scope="module")
def placed(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    tmp = tmp_path_factory.mktemp("placed")
    (tmp / "spec.toml").write_text(SPEC)
    res = CliRunner().invoke(app, ["run", str(tmp / "spec.toml"), "--out", str(tmp / "out")])
    assert res.exit_code == 0, res.output
    paths = sorted((tmp / "out" / "transcripts").glob("*.jsonl"))
    assert len(paths) == 8 * 6 * 3
    return paths


def _scores(head: dict[str, Any]) -> dict[int, float]:
    """The placement's score of each seat, worked out here with networkx on the recorded
    edges (an independent reading of ``adversaries.placement``)."""
    n = len(head["seats"])
    g: nx.Graph = nx.DiGraph() if head["directed"] else nx.Graph()
    g.add_nodes_from(range(n))
    g.add_edges_from(tuple(e) for e in head["edges"])
    if head["trial"]["adversary"]["placement"] == "betweenness":
        return {int(k): float(v) for k, v in nx.betweenness_centrality(g).items()}
    degree = g.out_degree() if head["directed"] else g.degree()
    return {int(k): float(v) for k, v in degree}


def test_every_seating_the_engine_makes_passes(placed: list[Path]) -> None:
    for path in placed:
        events = read_events(path)
        assert audit_events(events) == [], path.name


def test_a_role_swapped_off_the_centre_is_found(placed: list[Path]) -> None:
    """Swap an adversary's role with an honest seat that scores lower (higher, for
    ``leaf``): found, naming the placement; a swap between seats of the same score (a
    tie the seed drew) is no contradiction and is not reported."""
    found = tied = 0
    for path in placed:
        events = read_events(path)
        head = events[0]
        score = _scores(head)
        highest = head["trial"]["adversary"]["placement"] != "leaf"
        seats = head["seats"]
        adversaries = [s for s in seats if s["role"] == "adversary"]
        honest = [s for s in seats if s["role"] == "honest"]
        for a in adversaries:
            for h in honest:
                gap = score[a["seat"]] - score[h["seat"]]
                if abs(gap) < 1e-9:
                    kind = "tie"
                elif (gap > 0) == highest:
                    kind = "off"
                else:
                    continue  # the honest seat is better placed: the swap makes no sense
                trial = read_events(path)
                swapped = {s["seat"]: s for s in trial[0]["seats"]}
                x, y = swapped[a["seat"]], swapped[h["seat"]]
                for key in ("role", "adversary"):
                    x[key], y[key] = y[key], x[key]
                problems = audit_events(trial)
                if kind == "tie":
                    tied += 1
                    assert not any("placement" in p for p in problems), (path.name, problems)
                    continue
                found += 1
                assert any(
                    f"placement {head['trial']['adversary']['placement']!r}" in p for p in problems
                ), (path.name, a["seat"], h["seat"], problems)
                assert audit_events(trial, record=False) == []
    assert found > 50 and tied > 20, (found, tied)
