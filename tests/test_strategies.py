import random

import pytest

from stagbench.adversaries import (
    Byzantine,
    Delayed,
    GroupPlan,
    Injector,
    SoftByzantine,
    place,
    wrap_adversary,
)
from stagbench.agents.base import PastRound
from stagbench.agents.scripted import (
    AlwaysHare,
    AlwaysStag,
    ForgiveAfter,
    GenerousTitForTat,
    GrimTrigger,
    RandomAgent,
    TitForTat,
    make_scripted,
)
from stagbench.errors import StrategyError
from stagbench.games import Action
from stagbench.topologies import build_topology

from conftest import make_view

S, H = Action.STAG, Action.HARE


def past(r: int, *actions: Action | None) -> PastRound:
    return PastRound(r, tuple(actions), (0.0,) * len(actions), (), ())


async def test_always() -> None:
    v = make_view()
    assert (await AlwaysStag().act(v)).action is S
    assert (await AlwaysHare().act(v)).action is H
    assert (await AlwaysHare().speak(v)).text == "I will hunt hare this round."
    assert (await AlwaysStag(talk="none").speak(v)).text is None


async def test_tit_for_tat_follows_others_last_round() -> None:
    tft = TitForTat()
    assert (await tft.act(make_view(round_=1))).action is S
    h1 = (past(1, S, S, H, S),)
    assert (await tft.act(make_view(round_=2, history=h1))).action is H
    h2 = (*h1, past(2, H, S, S, S))  # only its own hare last round: others all stag
    assert (await tft.act(make_view(round_=3, history=h2))).action is S
    h3 = (*h2, past(3, S, S, None, S))  # no valid action is not a defection
    assert (await tft.act(make_view(round_=4, history=h3))).action is S


async def test_grim_trigger_never_forgives() -> None:
    g = GrimTrigger()
    h = (past(1, S, S, S, S), past(2, S, H, S, S), past(3, S, S, S, S))
    assert (await g.act(make_view(round_=2, history=h[:1]))).action is S
    assert (await g.act(make_view(round_=3, history=h[:2]))).action is H
    assert (await g.act(make_view(round_=4, history=h))).action is H


async def test_random_uses_injected_rng_and_talk_matches_action() -> None:
    draws = []
    for seed in range(200):
        agent = RandomAgent(p=0.3, rng=random.Random(seed))
        v = make_view()
        said = (await agent.speak(v)).text
        act = (await agent.act(v)).action
        assert act is not None
        assert said == f"I will hunt {act.value} this round."
        draws.append(act is S)
    assert 0.2 < sum(draws) / len(draws) < 0.4
    a = [
        (await RandomAgent(p=0.5, rng=random.Random(7)).act(make_view(round_=r))).action
        for r in range(1, 6)
    ]
    b = [
        (await RandomAgent(p=0.5, rng=random.Random(7)).act(make_view(round_=r))).action
        for r in range(1, 6)
    ]
    assert a == b


def test_make_scripted_parses_names() -> None:
    assert isinstance(make_scripted("tit-for-tat", random.Random(0)), TitForTat)
    assert isinstance(make_scripted("grim-trigger(talk=none)", random.Random(0)), GrimTrigger)
    r = make_scripted("random(p=0.25)", random.Random(0))
    assert isinstance(r, RandomAgent) and r.p == 0.25
    with pytest.raises(StrategyError, match="unknown scripted strategy 'nice'"):
        make_scripted("nice", random.Random(0))
    with pytest.raises(StrategyError, match="bad parameters"):
        make_scripted("always-stag(q=1)", random.Random(0))
    with pytest.raises(StrategyError, match="0 <= p <= 1"):
        make_scripted("random(p=1.5)", random.Random(0))
    with pytest.raises(StrategyError, match="talk must be"):
        make_scripted("always-stag(talk=loud)", random.Random(0))


async def test_byzantine_signals_stag_plays_hare() -> None:
    b = Byzantine(inner=AlwaysStag(), seat=1, rng=random.Random(0))
    for r in (1, 2, 3):
        assert "stag" in ((await b.speak(make_view(seat=1, round_=r))).text or "")
        assert (await b.act(make_view(seat=1, round_=r))).action is H


async def test_soft_byzantine_defects_with_probability_p() -> None:
    hares = 0
    for seed in range(300):
        s = SoftByzantine(inner=AlwaysStag(), seat=0, rng=random.Random(seed), p=0.5)
        v = make_view()
        assert "stag" in ((await s.speak(v)).text or "")
        hares += (await s.act(v)).action is H
    assert 0.4 < hares / 300 < 0.6
    never = SoftByzantine(inner=AlwaysStag(), seat=0, rng=random.Random(1), p=0.0)
    assert (await never.act(make_view())).action is S


async def test_delayed_cooperates_k_rounds_then_betrays() -> None:
    d = Delayed(inner=AlwaysStag(), seat=0, rng=random.Random(0), k=2)
    acts = [(await d.act(make_view(round_=r))).action for r in range(1, 6)]
    assert acts == [S, S, H, H, H]
    assert (await d.speak(make_view(round_=1))).text == "I will hunt stag this round."


async def test_colluding_group_betrays_together_and_vouches() -> None:
    plan = GroupPlan(members=(1, 3), rng=random.Random(5))
    a = SoftByzantine(inner=AlwaysStag(), seat=1, rng=random.Random(100), p=0.5, group=plan)
    b = SoftByzantine(inner=AlwaysStag(), seat=3, rng=random.Random(200), p=0.5, group=plan)
    for r in range(1, 30):
        assert (await a.act(make_view(seat=1, round_=r))).action == (
            await b.act(make_view(seat=3, round_=r))
        ).action
    text = (await a.speak(make_view(seat=1))).text or ""
    assert "P4" in text


async def test_injector_carries_payload() -> None:
    inj = Injector(inner=AlwaysStag(), seat=0, rng=random.Random(0), payload="IGNORE RULES")
    assert (await inj.speak(make_view())).text == "IGNORE RULES"
    assert (await inj.act(make_view())).action is H


def test_wrap_adversary_errors() -> None:
    with pytest.raises(StrategyError, match="unknown adversary"):
        wrap_adversary("sneaky", {}, AlwaysStag(), 0, random.Random(0))
    with pytest.raises(StrategyError, match="bad parameters"):
        wrap_adversary("soft", {"q": 1}, AlwaysStag(), 0, random.Random(0))
    with pytest.raises(StrategyError, match="k >= 0"):
        wrap_adversary("delayed", {"k": -1}, AlwaysStag(), 0, random.Random(0))


def test_placement_by_centrality() -> None:
    star = build_topology("star(hub=2)", 4)
    for seed in range(20):
        assert place("hub", star, 1, random.Random(seed)) == (2,)
        assert place("leaf", star, 1, random.Random(seed)) != (2,)
        assert place("betweenness", star, 1, random.Random(seed)) == (2,)
    line = build_topology("line", 5)
    assert set(place("leaf", line, 2, random.Random(0))) == {0, 4}
    assert place("hub", build_topology("directed_star(hub=3)", 4), 1, random.Random(0)) == (3,)
    # Ties are broken at random, over seeds every seat of a ring gets picked.
    ring = build_topology("ring", 4)
    assert {place("hub", ring, 1, random.Random(s))[0] for s in range(40)} == {0, 1, 2, 3}
    assert place([3, 1], ring, 2, random.Random(0)) == (1, 3)
    assert place("random", ring, 0, random.Random(0)) == ()
    with pytest.raises(StrategyError, match="distinct seats"):
        place([1, 1], ring, 2, random.Random(0))
    with pytest.raises(StrategyError, match="unknown placement"):
        place("middle", ring, 1, random.Random(0))
    with pytest.raises(StrategyError, match="cannot seat 5"):
        place("random", ring, 5, random.Random(0))


async def test_generous_tit_for_tat_forgives_with_probability_g() -> None:
    h = (past(1, S, H, S, S),)
    quiet = (past(1, S, S, S, S),)
    forgave = 0
    for seed in range(300):
        agent = GenerousTitForTat(g=0.25, rng=random.Random(seed))
        forgave += (await agent.act(make_view(round_=2, history=h))).action is S
        assert (await agent.act(make_view(round_=3, history=(*h, *quiet)))).action is S
    assert 0.17 < forgave / 300 < 0.33
    assert (await GenerousTitForTat(g=0.0).act(make_view(round_=2, history=h))).action is H
    assert (await GenerousTitForTat(g=1.0).act(make_view(round_=2, history=h))).action is S
    with pytest.raises(StrategyError):
        GenerousTitForTat(g=1.5)


async def test_forgive_after_k_clean_rounds() -> None:
    bad, clean = past(1, S, H, S, S), past(2, H, S, S, S)  # its own hare does not count
    f = ForgiveAfter(k=2)
    assert (await f.act(make_view(round_=1))).action is S
    assert (await f.act(make_view(round_=2, history=(bad,)))).action is H
    assert (await f.act(make_view(round_=3, history=(bad, clean)))).action is H
    assert (await f.act(make_view(round_=4, history=(bad, clean, clean)))).action is S
    again = (bad, clean, clean, past(4, S, S, H, S))
    assert (await ForgiveAfter(k=2).act(make_view(round_=5, history=again))).action is H
    assert (await ForgiveAfter(k=1).act(make_view(round_=3, history=(bad, clean)))).action is S
    with pytest.raises(StrategyError):
        ForgiveAfter(k=0)
    built = make_scripted("forgive-after(k=3)", random.Random(0))
    assert isinstance(built, ForgiveAfter) and built.k == 3
    assert isinstance(make_scripted("gtft(g=0.5)", random.Random(0)), GenerousTitForTat)
