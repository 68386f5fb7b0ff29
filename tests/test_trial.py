import pytest

from stagbench.runs.compose import seat_agents
from stagbench.runs.trial import play
from stagbench.topologies import build_topology

from helpers import Recorder, RecorderSeats, trial

TOPOLOGIES = [
    "complete",
    "ring",
    "line",
    "star(hub=0)",
    "directed_ring",
    "directed_star(hub=1)",
    "empty",
]


async def _run(topology: str, disclosure: str, phases: int = 1) -> dict[int, Recorder]:
    agents: dict[int, Recorder] = {}
    t = trial(topology, disclosure, rounds=2, phases=phases)
    seating = seat_agents(t, RecorderSeats(agents))
    await play(t, "t", seating)
    return agents


def _received(agents: dict[int, Recorder]) -> dict[int, list[tuple[int, str]]]:
    # What each seat had in its inbox when asked to act.
    return {
        s: [(m.sender, m.text) for v in a.views if v.phase is None for m in v.inbox]
        for s, a in agents.items()
    }


@pytest.mark.parametrize("topology", TOPOLOGIES)
async def test_routing_same_in_both_modes_disclosure_differs(topology: str) -> None:
    explicit = await _run(topology, "explicit")
    silent = await _run(topology, "silent")
    topo = build_topology(topology, 4)
    got = _received(explicit)
    assert got == _received(silent)
    for seat in range(4):
        expected = [
            (sender, f"hello from {sender} r{r} p0")
            for r in (1, 2)
            for sender in topo.senders(seat)
        ]
        assert got[seat] == expected
        for v in explicit[seat].views:
            assert v.topology is not None
            assert v.topology.can_reach == topo.receivers(seat)
            assert v.topology.hears_from == topo.senders(seat)
        assert all(v.topology is None for v in silent[seat].views)


async def test_talk_phases_are_simultaneous_and_cumulative() -> None:
    agents = await _run("complete", "explicit", phases=2)
    talk_views = [v for v in agents[0].views if v.phase is not None and v.round == 1]
    assert [len(v.inbox) for v in talk_views] == [0, 3]  # phase 1 sees phase 0 only
    act_view = next(v for v in agents[0].views if v.phase is None and v.round == 1)
    assert len(act_view.inbox) == 6
    assert act_view.said == ("hello from 0 r1 p0", "hello from 0 r1 p1")


async def test_history_reveals_all_actions_and_payoffs() -> None:
    agents = await _run("empty", "silent")
    last = [v for v in agents[2].views if v.round == 2][-1]
    assert len(last.history) == 1
    assert [a.value for a in last.history[0].actions if a] == ["stag"] * 4
    assert last.history[0].payoffs == (10.0,) * 4
