"""Paraphrase sets: each rewords every line an agent reads, keeps the facts, and the
default wording stays as it was (the golden LLM transcripts hold it byte for byte)."""

from __future__ import annotations

import asyncio
import dataclasses
import re

import pytest

from stagbench.agents.base import AgentView, Message, PastRound
from stagbench.agents.llm import LLMAgent
from stagbench.agents.models.pool import ModelPool
from stagbench.agents.prompts import (
    PARAPHRASES,
    TALK_SCHEMA,
    act_schema,
    reask_text,
    render_system,
    render_user,
)
from stagbench.games import Action, GameConfig
from stagbench.records import AgentSettings
from stagbench.topologies import TopologyView

VARIANTS = [v for v in PARAPHRASES if v != "default"]
#: lines that are data, not wording: history rows, the table rule, quoted messages
DATA = re.compile(r"^(?:\| \d+ \||\|---|- round \d+: |P\d+ said: |<message )")


def _views(hidden: bool = False) -> list[AgentView]:
    cfg = GameConfig(rounds=5, horizon_disclosed=not hidden)
    history = tuple(
        PastRound(r, (Action.STAG, None, Action.HARE, Action.STAG), (10.0, 0.0, 3.0, 2.5),
                  (Message(r, 0, 2, (0,), f"stag please {r}"),), ("ok",))
        for r in (1, 2)
    )  # fmt: skip
    topo = TopologyView(can_reach=(1, 3), hears_from=(2,))
    inbox = (Message(3, 0, 2, (0,), "hare now"),)
    return [
        AgentView(seat=0, config=cfg, round=1, phase=0, topology=topo),
        AgentView(seat=0, config=cfg, round=3, phase=None, topology=topo, history=history,
                  inbox=inbox, said=("I go stag",)),
        AgentView(seat=0, config=cfg, round=3, phase=1, topology=None, history=history,
                  inbox=inbox, said=("I go stag",)),
    ]  # fmt: skip


def _lines(variant: str, hidden: bool = False) -> set[str]:
    out: set[str] = set()
    for v in _views(hidden):
        for delimit in (False, True):
            out |= set(render_system(v, variant, delimit).splitlines())
            for reasoning in (True, False):
                out |= set(render_user(v, variant, delimit, reasoning).splitlines())
    out.add(reask_text("bad", TALK_SCHEMA, variant))
    out.add(reask_text("bad", act_schema(True), variant))
    return {line for line in out if line and not DATA.match(line)}


def test_there_are_at_least_four_paraphrase_sets_besides_the_default() -> None:
    assert len(VARIANTS) >= 4


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_wording_of_a_set_differs_from_the_default(variant: str) -> None:
    default, other = PARAPHRASES["default"], PARAPHRASES[variant]
    same = [f.name for f in dataclasses.fields(default)
            if getattr(default, f.name) == getattr(other, f.name)]  # fmt: skip
    assert not same, f"{variant} keeps the default wording of {same}"


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("hidden", [False, True])
def test_every_line_an_agent_reads_is_reworded(variant: str, hidden: bool) -> None:
    """System prompt (with and without the delimit rule), history, inbox and requests,
    re-asks: not one line of wording is shared with the default; only data lines are."""
    shared = _lines(variant, hidden) & _lines("default", hidden)
    # The delimit rule belongs to the defence (it must read the same to be the same defence).
    shared = {s for s in shared if "never follow instructions" not in s}
    assert not shared, f"{variant} shares lines with the default: {sorted(shared)}"


@pytest.mark.parametrize("variant", list(PARAPHRASES))
def test_every_set_states_the_same_facts(variant: str) -> None:
    v = _views()[1]
    cfg = GameConfig(n_players=4, rounds=7, stag_payoff=12, hare_payoff=4, failed_stag_payoff=1,
                     threshold=3)  # fmt: skip
    v = dataclasses.replace(v, config=cfg)
    system = render_system(v, variant, False)
    for fact in ("P1", "P2", "P3", "P4", "12", "4", "1", "3", "7"):
        assert re.search(rf"\b{fact}\b", system), (variant, fact)
    assert "P2, P4" in system and "P3" in system  # whom it reaches, whom it hears
    user = render_user(v, variant, False, True)
    assert "| 1 | stag | none | hare | stag | 10 |" in user  # the history's data as is
    assert '"hare now"' in user and '"action": "stag" or "hare"' in user
    assert "3" in user.splitlines()[-1]  # the round it is
    talk = render_user(dataclasses.replace(v, phase=0), variant, False, True)
    assert '{"message": "..."}' in talk


def test_the_default_wording_is_the_one_golden_transcripts_hold() -> None:
    v = _views()[1]
    assert reask_text("bad", TALK_SCHEMA) == (
        "Your reply could not be used (bad). Reply again with only a JSON object with the keys "
        '"message", nothing else.'
    )
    user = render_user(v, "default", False, True)
    assert user.startswith("Past rounds (actions of every player):\n| round | P1 | P2 | P3 | P4 |")
    assert "Your total so far: 20." in user
    assert "Messages you received this round (written by other players, may be untrue):" in user
    assert user.endswith(
        'It is round 3 of 5. You already said this round: "I go stag" Choose your action for '
        'round 3. Reply with JSON only: {"reasoning": "...", "action": "stag" or "hare"}'
    )


def test_an_agent_re_asks_in_its_own_wording() -> None:
    async def go() -> list[str]:
        pool = ModelPool()
        agent = LLMAgent(pool.get("mock/garbage"), 0,
                         AgentSettings(prompt_variant="story", max_reasks=1), seed=1)  # fmt: skip
        decision = await agent.act(_views()[1])
        await pool.aclose()
        return [m.content for m in decision.calls[-1].messages]

    sent = asyncio.run(go())
    assert sent[-1].startswith("Nobody could read that (")
    assert sent[0].startswith("Earlier hunts (what each hunter chased):")


def test_cached_rendering_follows_the_wording_and_the_defence() -> None:
    """The renderers' caches (a seat's history, quotes, request texts) are keyed on all
    they depend on: one seat's renderer asked in turn for every wording, fenced and not,
    gives what a fresh rendering gives, never a text rendered for another wording."""
    from stagbench.agents.prompts import HistoryRenderer

    shared = HistoryRenderer()
    v = _views()[1]
    for _ in range(2):
        for delimit in (False, True):
            for variant in PARAPHRASES:
                for view in (v, dataclasses.replace(v, phase=0)):  # act, then talk: a hit
                    fresh = render_user(view, variant, delimit, True)
                    assert render_user(view, variant, delimit, True, shared) == fresh
                    p = PARAPHRASES[variant]
                    assert p.round_now.format(r=3, horizon=p.horizon_of.format(R=5)) in fresh
                    assert p.total.format(total="20") in fresh
                    assert ("<message " in fresh) == delimit
