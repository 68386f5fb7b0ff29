"""Parameters in a topology, strategy or adversary string: ``true`` and ``false`` (TOML's and
JSON's spelling) are booleans, and a parameter annotated a boolean or a whole number
refuses anything else (redteam rt30 F1, F3, F6: ``directed=false`` was the text "false",
which every check took for true, so the graph was directed; ``enforce_defect=false``
enforced defection; ``relay=false`` relayed; ``star(hub=1.0)`` passed validate and broke
every trial; ``delayed(k=1.5)`` ran as k=1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stagbench.cli import app
from stagbench.registry import parse_call
from stagbench.topologies import build_topology

runner = CliRunner()


@pytest.mark.parametrize(
    ("text", "value"),
    [("x(a=false)", False), ("x(a=true)", True), ("x(a=FALSE)", False), ("x(a=False)", False),
     ("x(a='false')", "false"), ("x(a=falsey)", "falsey"), ("x(a=1/4)", 0.25),
     ("x(a=1/0)", "1/0")],
)  # fmt: skip
def test_true_and_false_are_booleans(text: str, value: object) -> None:
    assert parse_call(text)[1] == {"a": value}


@pytest.mark.parametrize(
    "spec",
    ["edges(pairs='0-1 1-2 2-3',directed=false)", "erdos-renyi(p=0.9,seed=3,directed=false)"],
)
def test_directed_false_builds_an_undirected_graph(spec: str) -> None:
    topo = build_topology(spec, 4, share=False)
    assert not topo.directed
    edges = set(topo.edges())
    assert edges and all((v, u) in edges for u, v in edges)  # every edge both ways
    assert build_topology(spec.replace("false", "true"), 4, share=False).directed


def _run(tmp_path: Path, models: str, adversary: str) -> list[list[dict[str, object]]]:
    spec = tmp_path / "spec.toml"
    spec.write_text(
        f'name = "words"\nseed = 3\nrepetitions = 2\n[game]\nrounds = 4\n[factors]\n'
        f'models = [{models}]\nadversaries = ["{adversary}"]\n'
    )
    out = tmp_path / "out"
    res = runner.invoke(app, ["run", str(spec), "--out", str(out)])
    assert res.exit_code == 0, res.output
    return [
        [json.loads(line) for line in path.read_text().splitlines()]
        for path in sorted((out / "transcripts").glob("*.jsonl"))
    ]


def test_enforce_defect_false_plays_the_model(tmp_path: Path) -> None:
    """A deceiver that may not enforce its defection plays its model's choice: stag."""
    for events in _run(tmp_path, '"mock/stag"', "deceiver(count=1,enforce_defect=false)"):
        adversaries = {s["seat"] for s in events[0]["seats"] if s["role"] == "adversary"}
        moves = [e["action"] for e in events if e["type"] == "action" and e["seat"] in adversaries]
        assert moves == ["stag"] * 4, moves


def test_relay_false_does_not_relay(tmp_path: Path) -> None:
    """An obedient agent with relay=false says its own intent, never the order's words."""
    trials = _run(tmp_path, '"scripted/obedient(relay=false)"', "injector(count=1)")
    said = [
        e["text"]
        for events in trials
        for e in events
        if e["type"] == "message" and e["round"] == 2
        for s in events[0]["seats"]
        if s["seat"] == e["sender"] and s["role"] == "honest"
    ]
    assert said and set(said) == {"I will hunt hare this round."}, said


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ('topologies = ["star(hub=1.0)"]', "hub must be a whole number, not 1.0"),
        ('topologies = ["directed-star(hub=2.0)"]', "hub must be a whole number, not 2.0"),
        ('adversaries = ["delayed(k=1.5,count=1)"]', "k must be a whole number, not 1.5"),
        ('models = ["scripted/obedient(relay=yes)"]', "relay must be true or false, not 'yes'"),
        ('adversaries = ["delayed(k=1,count=1,inner=x)"]', "inner is set by the seat"),
        ('models = ["scripted/random(p=high)"]', "p must be a number, not 'high'"),
        (
            'adversaries = ["deceiver(count=1,enforce_defect=1)"]',
            "enforce_defect must be true or false, not 1",
        ),
    ],
)
def test_a_parameter_of_the_wrong_kind_is_refused(tmp_path: Path, entry: str, words: str) -> None:
    key = entry.split(" =")[0]
    body = {"models": '["mock/stag"]', "topologies": '["ring"]', "adversaries": '["none"]'}
    body[key] = entry.split("= ", 1)[1]
    spec = tmp_path / "spec.toml"
    spec.write_text(
        'name = "kinds"\n[factors]\n' + "".join(f"{k} = {v}\n" for k, v in body.items())
    )
    res = runner.invoke(app, ["validate", str(spec)])
    assert res.exit_code != 0 and words in " ".join(res.output.split()), res.output
