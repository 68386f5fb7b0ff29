"""Report fixes from redteam17b (findings 3, 4 and 5): the betrayal-detection rate per
model and design cell (it was one rate pooled over them), a note on each archetype group
whose forgiveness could not be tested (an adversary that always hunts hare leaves no clean
round), and a note on a comparison whose no-spread fallback interval disagrees with its
exact test."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd

from stagbench.agents.models.base import ChatMessage
from stagbench.agents.models.providers.mock import ReplyFn, register_mock
from stagbench.analysis import report

from analysis_helpers import run_spec

#: per planted model, (message, reasoning) in each round (it always hunts stag)
PLANTED = {
    # distrust voiced in its round-3 talk: detected, latency 2
    "lat2": [("I will hunt stag.", "Stag pays most."), ("Let us keep hunting stag.", "Stag."),
             ("I don't trust them anymore.", "Stag."), ("Stag.", "Stag.")],
    # distrust voiced in its round-2 reasoning: detected, latency 1
    "lat1r": [("I will hunt stag.", "Stag pays most."),
              ("Let us keep hunting stag.", "They lied to me, but stag."),
              ("Stag.", "Stag."), ("Stag.", "Stag.")],
    # distrust voiced only in round 1, before the betrayal is revealed: not detected
    "pre": [("I don't trust anyone, but stag.", "I distrust everyone."), ("Stag.", "Stag."),
            ("Stag.", "Stag."), ("Stag.", "Stag.")],
}  # fmt: skip
ROUND_NOW = re.compile(r"(?:It is round|action for round) (\d+)")


def _planted(turns: list[tuple[str, str]]) -> ReplyFn:
    """A mock that says ``turns[r - 1]`` in round r (read from its prompt, so trials run
    side by side do not interleave its replies)."""

    def reply(messages: list[ChatMessage], purpose: str | None) -> str:
        r = int(ROUND_NOW.findall("\n".join(m.content for m in messages))[-1])
        message, reasoning = turns[r - 1]
        if purpose == "act":
            return json.dumps({"reasoning": reasoning, "action": "stag"})
        return json.dumps({"message": message})

    return reply


#: redteam17b's d_latency: three mock models, each its own population, facing one
#: Byzantine player (its stag signal and hare in round 1: a betrayal observed in round 1)
LATENCY = """
name = "d-latency"
seed = 3
repetitions = 3
[game]
n_players = 2
rounds = 4
[factors]
models = ["mock/lat2", "mock/lat1r", "mock/pre"]
adversaries = ["byzantine(count=1)"]
"""


def _latency_run(spec: str, out: Path) -> Path:
    for name, turns in PLANTED.items():
        register_mock(name, _planted(turns))
    return run_spec(spec, out, llm=True)


def test_detection_rate_is_per_model_and_cell(tmp_path: Path) -> None:
    """Planted: lat2 voices distrust in its round-3 talk (latency 2), lat1r in its round-2
    reasoning (latency 1), pre only in round 1, before any betrayal (not detected). The
    section printed one rate pooled over the three, 0.667, which describes none of them;
    now each model and cell has its row, with n, trials, its interval and latency."""
    run = _latency_run(LATENCY, tmp_path / "run")
    report.build(run, n_boot=100, sections=[report.betrayal_detection])
    table = pd.read_parquet(run / "report" / "betrayal_detection.parquet")
    rows = table.set_index("model")
    assert set(rows.index) == {"lat2", "lat1r", "pre"}
    assert (rows["population"] == rows.index).all()  # the design cell: its population
    assert (rows["detection_n"] == 3).all() and (rows["detection_trials"] == 3).all()
    assert rows.loc["lat2", "detection_rate"] == 1.0 == rows.loc["lat1r", "detection_rate"]
    assert rows.loc["pre", "detection_rate"] == 0.0
    assert list(rows.loc[["lat2", "lat1r", "pre"], "detected"]) == [3, 3, 0]
    assert (rows["detection_ci_lo"] <= rows["detection_rate"]).all()
    assert (rows["detection_rate"] <= rows["detection_ci_hi"]).all()
    assert rows.loc["lat2", "latency_median"] == 2 == rows.loc["lat2", "latency_mean"]
    assert rows.loc["lat1r", "latency_median"] == 1 == rows.loc["lat1r", "latency_mean"]
    assert list(rows.loc[["lat2", "lat1r", "pre"], "latency_n"]) == [3, 3, 0]
    assert math.isnan(rows.loc["pre", "latency_median"])
    text = (run / "report" / "report.md").read_text()
    assert "0.667" not in text  # the pooled rate is gone
    latency = pd.read_parquet(run / "report" / "detection_latency.parquet")
    assert set(latency["model"]) == {"lat2", "lat1r"}  # the figure's data, per row


def test_a_cell_without_observed_betrayal_says_why(tmp_path: Path) -> None:
    """A design cell in which no honest agent observed a betrayal keeps its row: no rate,
    and a note saying why."""
    spec = LATENCY.replace('adversaries = ["byzantine(count=1)"]',
                           'adversaries = ["none", "byzantine(count=1)"]')  # fmt: skip
    spec = spec.replace('"mock/lat1r", "mock/pre"', '"mock/pre"')
    run = _latency_run(spec, tmp_path / "run")
    report.build(run, n_boot=100, sections=[report.betrayal_detection])
    table = pd.read_parquet(run / "report" / "betrayal_detection.parquet")
    assert len(table) == 4  # two models x two adversary arms
    none = table[table["adversary"] == "none"]
    assert (none["detection_n"] == 0).all() and none["detection_rate"].isna().all()
    assert none["note"].str.contains("observed no betrayal").all()


GRIM = """
name = "grim"
seed = 4
repetitions = 5
[game]
n_players = 2
rounds = 6
[factors]
models = ["scripted/grim-trigger"]
adversaries = ["byzantine(count=1)", "soft(p=0.5,count=1)"]
"""


def test_archetype_group_without_a_chance_to_forgive_is_noted(tmp_path: Path) -> None:
    """Grim trigger facing a Byzantine player (hare every round) switches for good and
    never meets a round in which every other player hunted stag: Defection-Prone cannot be
    told apart there, and the group is Unclassified at full confidence. The table now says
    so on that group; facing a player who hunts stag half the time, it has its chance."""
    run = run_spec(GRIM, tmp_path / "run")
    report.build(run, n_boot=100, sections=[report.archetype_section])
    table = pd.read_parquet(run / "report" / "archetypes.parquet").set_index("condition")
    byz = table.loc[next(c for c in table.index if c.startswith("byzantine"))]
    soft = table.loc[next(c for c in table.index if c.startswith("soft"))]
    assert byz["label"] == "Unclassified/Inconsistent"
    assert byz["forgive_chance"] == 0 and byz["switched"] == 5
    assert "none of its 5 agent-trials that switched to hare" in byz["note"]
    assert "Defection-Prone cannot be told apart here" in byz["note"]
    assert soft["forgive_chance"] > 0 and soft["note"] == ""
    text = (run / "report" / "report.md").read_text()
    assert "Defection-Prone cannot be told apart" in text


ROUND = """
name = "b-round"
seed = 5
repetitions = 6
[game]
n_players = 4
rounds = 5
[factors]
models = ["scripted/tit-for-tat"]
adversaries = ["none", "delayed(k=2,count=1)"]
"""


def test_an_interval_that_disagrees_with_the_exact_test_says_so(tmp_path: Path) -> None:
    """redteam17b's b_round: every honest trial at exactly 1.0 under none and exactly 0.6
    against delayed(k=2). The exact permutation p is at its floor (2/924) while the
    difference's interval (the arms' Wilson intervals on trials, combined by
    square-and-add) contains 0: the row says how its interval was made and that the two
    disagree."""
    run = run_spec(ROUND, tmp_path / "run")
    report.build(run, n_boot=200, sections=[report.comparisons])
    row = pd.read_parquet(run / "report" / "comparisons.parquet").iloc[0]
    assert row["rate_a"] == 1.0 and abs(row["rate_b"] - 0.6) < 1e-12
    assert row["diff_lo"] < 0 < row["diff_hi"] and row["p"] <= 0.05
    method = row["diff_ci_method"]
    assert method.startswith("square-and-add") and method.count("Wilson on trials") == 2
    assert "contains 0" in row["note"] and "not the test inverted" in row["note"]
    text = (run / "report" / "report.md").read_text()
    assert "in 1 row(s) it and p disagree (see note)" in text


def test_the_disagreement_note_both_ways() -> None:
    """The note is given only where the interval and p disagree: an interval that holds 0
    beside p <= 0.05, or one that excludes 0 beside p > 0.05."""
    assert "contains 0" in report._diff_ci_note(-0.07, 0.75, 0.002)
    assert "excludes 0" in report._diff_ci_note(0.05, 0.9, 0.33)
    assert report._diff_ci_note(0.05, 0.9, 0.01) == ""
    assert report._diff_ci_note(-0.1, 0.9, 0.4) == ""
    assert report._diff_ci_note(math.nan, 0.9, 0.4) == ""
