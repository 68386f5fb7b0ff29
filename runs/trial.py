"""One trial: seat the agents, then per round talk phase(s), simultaneous actions, reveal.

Agents of a round are called concurrently; events are recorded in seat order so the
transcript does not depend on which call returned first.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import stagbench
from adversaries import GroupPlan, place
from agents.base import Agent, AgentView, Decision, Message, PastRound, Utterance
from games import Action, GameState
from runs.spec import SCRIPTED_ADVERSARIES, TrialSpec
from runs.transcript import (
    ActionEvent,
    Header,
    MessageEvent,
    ModelCallEvent,
    RoundEndEvent,
    SeatInfo,
    Transcript,
    TrialEndEvent,
)
from topologies import Topology, build_topology

T = TypeVar("T")

# (model string, seat, rng) -> honest agent
AgentBuilder = Callable[[str, int, random.Random], Agent]
# (trial, seat, inner model string, builder, rng, group) -> adversary agent
AdversaryBuilder = Callable[
    [TrialSpec, int, str, AgentBuilder, random.Random, GroupPlan | None], Agent
]


@dataclass
class Seating:
    seats: list[SeatInfo]
    agents: list[Agent]
    topology: Topology


def seat_rng(trial: TrialSpec, label: str | int) -> random.Random:
    """An independent, reproducible generator for one seat or purpose of one trial."""
    return random.Random(f"{trial.seed}:{label}")


def default_adversary_model(trial: TrialSpec) -> str:
    """Scripted adversaries wrap always-stag; LLM ones use the trial's first honest model."""
    if trial.adversary.model:
        return trial.adversary.model
    if trial.adversary.kind in SCRIPTED_ADVERSARIES:
        return "scripted/always-stag"
    return trial.models[0]


def seat_agents(
    trial: TrialSpec, build: AgentBuilder, build_adversary: AdversaryBuilder
) -> Seating:
    """Place adversaries, then shuffle the honest population over the remaining seats."""
    n = trial.game.n_players
    rng = random.Random(trial.seed)
    topo = build_topology(trial.topology, n)
    adv = trial.adversary
    adv_seats = place(adv.placement, topo, adv.count, rng) if adv.kind != "none" else ()
    honest = [s for s in range(n) if s not in adv_seats]
    population = [trial.models[i % len(trial.models)] for i in range(len(honest))]
    rng.shuffle(population)
    model_of = dict(zip(honest, population, strict=True))
    group = (
        GroupPlan(members=adv_seats, rng=seat_rng(trial, "group"))
        if adv.colluding and adv_seats
        else None
    )
    seats: list[SeatInfo] = []
    agents: list[Agent] = []
    for s in range(n):
        r = seat_rng(trial, s)
        if s in adv_seats:
            inner = default_adversary_model(trial)
            agents.append(build_adversary(trial, s, inner, build, r, group))
            seats.append(SeatInfo(seat=s, model=inner, role="adversary", adversary=adv.label))
        else:
            agents.append(build(model_of[s], s, r))
            seats.append(SeatInfo(seat=s, model=model_of[s], role="honest"))
    return Seating(seats=seats, agents=agents, topology=topo)


async def gather_or_cancel(coros: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Like ``asyncio.gather``, but the first failure cancels the other calls of the phase
    (a budget stop or an outage must not leave orphan model calls running)."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _action_name(a: Action | None) -> str | None:
    return None if a is None else a.value


async def play(trial: TrialSpec, spec_name: str, seating: Seating) -> Transcript:
    """Play the trial to its end and return its transcript."""
    game = trial.game
    n = game.n_players
    topo = seating.topology
    agents = seating.agents
    state = GameState(game)
    events: list[MessageEvent | ModelCallEvent | ActionEvent | RoundEndEvent] = []
    history: list[list[PastRound]] = [[] for _ in range(n)]
    tokens_in = tokens_out = 0
    cost = 0.0
    failures = 0

    def log_calls(seat: int, round_: int, phase: int | None, reply: Utterance | Decision) -> None:
        nonlocal tokens_in, tokens_out, cost
        for call in reply.calls:
            events.append(ModelCallEvent(round=round_, phase=phase, seat=seat, call=call))
            tokens_in += call.input_tokens
            tokens_out += call.output_tokens
            cost += call.cost_usd

    while not state.is_terminal:
        r = state.round
        inbox: list[list[Message]] = [[] for _ in range(n)]
        said: list[list[str]] = [[] for _ in range(n)]

        def view(
            seat: int,
            phase: int | None,
            r: int = r,
            inbox: list[list[Message]] = inbox,
            said: list[list[str]] = said,
        ) -> AgentView:
            return AgentView(
                seat=seat,
                config=game,
                round=r,
                phase=phase,
                topology=topo.view(seat, trial.disclosure),
                history=tuple(history[seat]),
                inbox=tuple(inbox[seat]),
                said=tuple(said[seat]),
            )

        for phase in range(game.talk_phases):
            views = [view(s, phase) for s in range(n)]
            utterances = await gather_or_cancel(
                [a.speak(v) for a, v in zip(agents, views, strict=True)]
            )
            delivered: list[Message] = []
            for s, u in enumerate(utterances):
                log_calls(s, r, phase, u)
                failures += u.parse_failed
                text = u.text.strip() if u.text else None
                receivers = topo.receivers(s) if text else ()
                events.append(
                    MessageEvent(
                        round=r,
                        phase=phase,
                        sender=s,
                        receivers=list(receivers),
                        text=text,
                        parse_failed=u.parse_failed,
                        error=u.error,
                    )
                )
                if text:
                    said[s].append(text)
                    delivered.append(Message(r, phase, s, receivers, text))
            # Talk within a phase is simultaneous: deliver only after everyone spoke.
            for m in delivered:
                for recv in m.receivers:
                    inbox[recv].append(m)

        views = [view(s, None) for s in range(n)]
        decisions = await gather_or_cancel([a.act(v) for a, v in zip(agents, views, strict=True)])
        for s, d in enumerate(decisions):
            log_calls(s, r, None, d)
            failures += d.parse_failed
            events.append(
                ActionEvent(
                    round=r,
                    seat=s,
                    action=_action_name(d.action),
                    reasoning=d.reasoning,
                    parse_failed=d.parse_failed,
                    error=d.error,
                )
            )
        result = state.apply_joint_action([d.action for d in decisions])
        events.append(
            RoundEndEvent(
                round=r,
                actions=[_action_name(a) for a in result.actions],
                payoffs=list(result.payoffs),
                stag_count=result.stag_count,
                hunt_succeeded=result.hunt_succeeded,
            )
        )
        for s in range(n):
            history[s].append(
                PastRound(r, result.actions, result.payoffs, tuple(inbox[s]), tuple(said[s]))
            )

    header = Header(
        stagbench_version=stagbench.__version__,
        spec_name=spec_name,
        trial=trial,
        seats=seating.seats,
        edges=topo.edges(),
        directed=topo.directed,
    )
    end = TrialEndEvent(
        rounds_played=len(state.history),
        totals=list(state.totals()),
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        cost_usd=round(cost, 10),
        parse_failures=failures,
    )
    return Transcript(header=header, events=events, end=end)
