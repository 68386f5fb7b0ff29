"""Games that are not the default (red team rt40): efficiency under negative payoffs and a
stag payoff of 0."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from stagbench.analysis import report
from stagbench.runs.spec import parse_spec

from analysis_helpers import run_spec

PAYOFF_GAMES = """
name = "payoff-games"
seed = 21
repetitions = 3
[game]
n_players = 4
rounds = 3
[factors]
models = ["scripted/always-stag"]
topologies = ["complete"]
adversaries = ["none", "byzantine(count=1)"]
conditions = [
  {name = "neg", stag_payoff = -1, hare_payoff = -3, failed_stag_payoff = -10},
  {name = "default", stag_payoff = 10, hare_payoff = 3, failed_stag_payoff = 0},
  {name = "stag0", stag_payoff = 0, hare_payoff = -1, failed_stag_payoff = -5},
]
"""


def test_efficiency_reads_the_same_way_under_any_payoffs(tmp_path: Path) -> None:
    """Always-stag agents: with no adversary every hunt succeeds (efficiency 1 in every
    game); a byzantine breaks every hunt, the three honest agents earn the failed stag
    payoff (0 on the scale) and the byzantine the hare payoff. The ratio to the stag
    payoff read 8.25 for that in the negative game (1 for every hunt succeeding) and was
    blank, with n_all 0, in the game whose stag payoff is 0."""
    run = run_spec(PAYOFF_GAMES, tmp_path / "run")
    report.build(run, n_boot=100, sections=[report.payoffs])
    pay = pd.read_parquet(run / "report" / "payoffs.parquet")
    got = {(r["condition"], r["adversary"].split("[")[0]): r for _, r in pay.iterrows()}
    # (hare - worst) / (stag - worst) for the byzantine, 0 for the three honest agents
    hare_share = {"neg": 7 / 9, "default": 3 / 10, "stag0": 4 / 5}
    for game, share in hare_share.items():
        assert got[(game, "none")]["efficiency"] == pytest.approx(1.0)
        assert got[(game, "byzantine")]["efficiency"] == pytest.approx(share / 4)
        assert got[(game, "byzantine")]["n_all"] == 3 * 3 * 4
    assert got[("default", "byzantine")]["efficiency"] == pytest.approx(0.075)  # as before


NO_TALK = """
name = "no-talk"
seed = 4
repetitions = 2
[game]
rounds = 3
talk_phases = 0
[factors]
models = ["scripted/grim-trigger"]
topologies = ["complete", "ring"]
adversaries = ["none", "byzantine(count=1)", "delayed(k=3,count=1)"]
"""


def test_validate_warns_about_games_that_test_less_than_they_seem() -> None:
    """rt40 F2-F4: accepted without a word before."""
    warned = "\n".join(parse_spec(NO_TALK).warnings())
    assert "talk_phases = 0: the topologies act only on cheap talk" in warned
    assert "betrayal (a stag signal, then hare) cannot happen" in warned
    assert "delayed(k=3) betrays from round 4, after the game's 3 rounds" in warned
    odd = parse_spec(
        NO_TALK.replace("talk_phases = 0", "talk_phases = 1\nthreshold = 1\ninvalid_payoff = 50")
    ).warnings()
    assert any("a stag threshold of 1: a stag hunter always succeeds" in w for w in odd)
    assert any("invalid_payoff 50 is above the stag payoff 10" in w for w in odd)
    assert not any("talk_phases = 0" in w for w in odd)
    assert not [w for w in parse_spec(PAYOFF_GAMES).warnings() if "talk" in w or "delayed" in w]


def test_trials_without_talk_are_named_beside_the_betrayal_counts(tmp_path: Path) -> None:
    """rt40 F2: with no talk phase the byzantine hunted hare every round and the report
    said "0 betrayal events" as a measured count; it now says that no message reached
    anyone in those trials."""
    run = run_spec(NO_TALK, tmp_path / "run")
    report.build(run, n_boot=100, sections=[report.comparisons, report.betrayal_detection])
    text = (run / "report" / "report.md").read_text()
    line = next(x for x in text.splitlines() if "betrayal events" in x)
    assert line.startswith("0 betrayal events")
    assert "In 12 of 12 trials no message reached anyone" in line
    assert "No honest agent observed a betrayal: no detection rate. In 12 of 12" in text
    talk = run_spec(PAYOFF_GAMES, tmp_path / "talk")
    report.build(talk, n_boot=100, sections=[report.comparisons])
    assert "no message reached anyone" not in (talk / "report" / "report.md").read_text()
