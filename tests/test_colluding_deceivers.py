"""Colluding LLM deceivers: told their partners and one shared plan, they betray in the
same rounds and vouch for each other; a lone deceiver's brief is as it always was."""

from __future__ import annotations

from pathlib import Path

import pytest

from stagbench.agents.prompts import DECEIVER_BRIEF
from stagbench.errors import SpecError
from stagbench.games import player_label
from stagbench.records import MessageEvent, RoundEndEvent, Transcript, read_transcript
from stagbench.runs.spec import parse_spec

from analysis_helpers import run_spec

SPEC = """
name = "colluders"
seed = {seed}
repetitions = 4
[game]
n_players = 6
rounds = 6
[factors]
models = ["mock/random"]
adversaries = [{arms}]
"""


def _run(tmp_path: Path, arms: str, seed: int = 1) -> list[Transcript]:
    out = run_spec(SPEC.format(arms=arms, seed=seed), tmp_path / "run", llm=True)
    return [read_transcript(p) for p in sorted((out / "transcripts").glob("*.jsonl"))]


def _plan(system: str) -> str:
    return system.split("Your shared plan: ")[1].split(" In your messages")[0]


def _betrayal_rounds(system: str, total: int) -> list[int]:
    plan = _plan(system)
    if "every round" in plan:
        return list(range(1, total + 1))
    listed = plan.split("hunt hare in round")[1].split(";")[0]
    return [int(x) for x in listed.replace("s", "").replace("and", ",").split(",") if x.strip()]


def test_colluding_deceivers_know_their_partners_share_a_plan_and_vouch(tmp_path: Path) -> None:
    trials = _run(tmp_path, '"deceiver(count=3,colluding=True,p=0.5,after=1)"')
    assert len(trials) == 4
    plans = set()
    for t in trials:
        adv = [s for s in t.header.seats if s.role == "adversary"]
        assert len(adv) == 3
        shared = set()
        for s in adv:
            assert s.system is not None and DECEIVER_BRIEF in s.system
            partners = [player_label(o.seat) for o in adv if o.seat != s.seat]
            head = s.system.split("You are not alone: ")[1]
            assert head.startswith(" and ".join(partners) + " work with you in secret")
            assert f"vouch for {' and '.join(partners)}" in s.system
            shared.add(_plan(s.system))
        assert len(shared) == 1  # one plan for the whole group
        plans |= shared
        rounds = _betrayal_rounds(adv[0].system or "", 6)
        assert 1 not in rounds  # after=1: trust first
        ends = [e for e in t.events if isinstance(e, RoundEndEvent)]
        for e in ends:
            acts = {e.actions[s.seat] for s in adv}
            if e.round in rounds:
                assert acts == {"hare"}, (e.round, rounds)  # they betray together
        for m in t.events:
            if isinstance(m, MessageEvent) and m.sender in {s.seat for s in adv} and m.text:
                others = [player_label(s.seat) for s in adv if s.seat != m.sender]
                assert all(o in m.text for o in others)  # vouches for every partner
    assert len(plans) > 1  # the plan is drawn per trial, not fixed


def test_deceivers_that_do_not_collude_are_not_told_of_each_other(tmp_path: Path) -> None:
    trials = _run(tmp_path, '"deceiver(count=2,p=0.5)"')
    differ = 0
    for t in trials:
        adv = [s for s in t.header.seats if s.role == "adversary"]
        systems = [s.system or "" for s in adv]
        assert not any("You are not alone" in s for s in systems)
        assert all("Your plan: " in s for s in systems)
        differ += systems[0].split("Your plan: ")[1] != systems[1].split("Your plan: ")[1]
        for m in t.events:
            if isinstance(m, MessageEvent) and m.sender in {s.seat for s in adv} and m.text:
                assert "you can trust us" not in m.text
    assert differ  # each draws its own rounds


def test_a_lone_deceiver_keeps_the_brief_it_always_had(tmp_path: Path) -> None:
    for t in _run(tmp_path, '"deceiver(count=1)"'):
        adv = [s for s in t.header.seats if s.role == "adversary"]
        assert adv[0].system is not None and adv[0].system.endswith("\n" + DECEIVER_BRIEF)
        ends = [e for e in t.events if isinstance(e, RoundEndEvent)]
        assert all(e.actions[adv[0].seat] == "hare" for e in ends)


def test_a_group_left_free_is_briefed_but_not_forced(tmp_path: Path) -> None:
    trials = _run(tmp_path, '"deceiver(count=2,colluding=True,enforce_defect=False)"', seed=3)
    actions = set()
    for t in trials:
        adv = [s for s in t.header.seats if s.role == "adversary"]
        assert all("Your shared plan: hunt hare in every round." in (s.system or "") for s in adv)
        ends = [e for e in t.events if isinstance(e, RoundEndEvent)]
        actions |= {e.actions[s.seat] for e in ends for s in adv}
    assert actions == {"stag", "hare"}  # mock/random chooses: nothing was enforced


@pytest.mark.parametrize(("arm", "message"), [("p=1.5", "0 <= p <= 1"), ("after=-1", "after >= 0")])
def test_bad_deceiver_parameters_are_clear_errors(arm: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec(SPEC.format(arms=f'"deceiver(count=2,{arm})"', seed=1))


VOUCH_10 = """
name = "vouch10"
seed = 4
[game]
n_players = 10
rounds = 2
[factors]
models = ["mock/p10"]
adversaries = ["deceiver(count=2,placement=[0,9],colluding=True)"]
[model_settings."mock/p10"]
options = {{replies = ['{{"message": "{said}", "reasoning": "x", "action": "stag"}}']}}
"""


@pytest.mark.parametrize(
    ("said", "vouched_by"),
    [
        ("Trust P10, we all hunt stag.", {"P10"}),  # P10 names itself, not P1 (redteam F4)
        ("Trust P1, we all hunt stag.", {"P1"}),
        ("P1 and P10 hunt stag.", set()),  # each names its partner: nothing appended
        ("Ask P1: P10 and P1 hunt stag.", set()),
    ],
)
def test_vouching_matches_whole_labels(tmp_path: Path, said: str, vouched_by: set[str]) -> None:
    """A partner is named by its whole label: with ten players, ``P10`` does not name
    ``P1``, so P10's message that names only itself still gets P1's vouching."""
    out = run_spec(VOUCH_10.format(said=said), tmp_path / "run", llm=True)
    (path,) = sorted((out / "transcripts").glob("*.jsonl"))
    msgs = [e for e in read_transcript(path).events if isinstance(e, MessageEvent)]
    by = {player_label(m.sender): m.text for m in msgs if m.sender in (0, 9)}
    assert set(by) == {"P1", "P10"}
    for who, text in by.items():
        partner = "P10" if who == "P1" else "P1"
        vouch = f"{said} {partner} will hunt stag too, you can trust us."
        assert text == (vouch if who in vouched_by else said), (who, text)
