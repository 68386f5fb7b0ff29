"""One trial, its agents seated: per round talk phase(s), simultaneous actions, reveal.

Agents of a round are called concurrently; events are recorded in seat order so the
transcript does not depend on which call returned first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import stagbench
from stagbench.agents.base import AgentView, Decision, Message, PastRound, Utterance
from stagbench.games import Action, GameState
from stagbench.records import (
    ActionEvent,
    BodyEvent,
    ChatMessage,
    Header,
    MessageEvent,
    ModelCallEvent,
    ModelCallRecord,
    RoundEndEvent,
    Transcript,
    TrialEndEvent,
    TrialSpec,
    maker,
)
from stagbench.runs.compose import Seating

T = TypeVar("T")


async def gather_or_cancel(coros: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Like ``asyncio.gather``, but the first failure cancels the other calls of the phase
    (a budget stop or an outage must not leave orphan model calls running).

    One future and one small callback per task stand in for ``asyncio.gather``'s
    machinery (half its CPU; every agent's every turn comes through here)."""
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(c) for c in coros]
    settled: asyncio.Future[asyncio.Task[T]] = loop.create_future()
    left = len(tasks)

    def on_done(task: asyncio.Task[T]) -> None:
        nonlocal left
        left -= 1
        if settled.done():
            return
        if left == 0 or task.cancelled() or task.exception() is not None:
            settled.set_result(task)

    for t in tasks:
        t.add_done_callback(on_done)
    try:
        if tasks:
            last = await settled
            if left:  # one failed first: raise its error (or cancellation)
                last.result()
        return [t.result() for t in tasks]
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


_new_call_event = maker(ModelCallEvent)
_new_message_event = maker(MessageEvent)
_new_action_event = maker(ActionEvent)
_ACTIONS = frozenset({"stag", "hare", None})


def _new_view(fields: dict[str, Any]) -> AgentView:
    """``AgentView(**fields)`` (every field given, in order) without the frozen dataclass's
    eight guarded attribute writes: a trial makes one per seat per phase."""
    view = object.__new__(AgentView)
    view.__dict__.update(fields)
    return view


def _plain(flag: object, *texts: object) -> bool:
    """An agent's reply flag and texts of exactly the record's types (the common case),
    which the record can take unvalidated."""
    return type(flag) is bool and all(t is None or type(t) is str for t in texts)


def _action_name(a: Action | None) -> str | None:
    return None if a is None else str(a)  # a StrEnum's str() is its value, without enum's property


async def play(trial: TrialSpec, spec_name: str, seating: Seating) -> Transcript:
    """Play the trial to its end and return its transcript."""
    game = trial.game
    n = game.n_players
    topo = seating.topology
    agents = seating.agents
    state = GameState(game)
    events: list[BodyEvent] = []
    #: each seat's system prompt, stored once in its SeatInfo (transcript format v2)
    systems: dict[int, str] = {}
    history: list[list[PastRound]] = [[] for _ in range(n)]
    #: what each seat is told of the network: the same every round
    topo_views = [topo.view(s, trial.disclosure) for s in range(n)]
    tokens_in = tokens_out = 0
    cost = 0.0
    failures = 0

    def log_calls(seat: int, round_: int, phase: int | None, reply: Utterance | Decision) -> None:
        nonlocal tokens_in, tokens_out, cost
        for call in reply.calls:
            if not isinstance(call, ModelCallRecord):  # the event below is built unchecked
                raise TypeError(f"an agent reported a call that is not a ModelCallRecord: {call!r}")
            if call.system is not None and systems.setdefault(seat, call.system) != call.system:
                # Not the seat's usual system prompt: this call keeps its own inline.
                inline = [ChatMessage(role="system", content=call.system), *call.messages]
                call = call.model_copy(update={"messages": inline, "system": None})
            events.append(
                _new_call_event(
                    type="model_call",
                    round=round_,
                    phase=phase,
                    seat=seat,
                    call=call,
                )
            )
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
            return _new_view(
                {
                    "seat": seat,
                    "config": game,
                    "round": r,
                    "phase": phase,
                    "topology": topo_views[seat],
                    "history": tuple(history[seat]),
                    "inbox": tuple(inbox[seat]),
                    "said": tuple(said[seat]),
                }
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
                fields = {
                    "round": r,
                    "phase": phase,
                    "sender": s,
                    "receivers": list(receivers),
                    "text": text,
                    "parse_failed": u.parse_failed,
                    "error": u.error,
                }
                if _plain(u.parse_failed, u.error):
                    events.append(_new_message_event(type="message", **fields))
                else:  # an agent's odd values: validated (coerced, or a clear error)
                    events.append(MessageEvent.model_validate(fields))
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
            action = {
                "round": r,
                "seat": s,
                "action": _action_name(d.action),
                "reasoning": d.reasoning,
                "parse_failed": d.parse_failed,
                "error": d.error,
            }
            if _plain(d.parse_failed, d.error, d.reasoning) and action["action"] in _ACTIONS:
                events.append(_new_action_event(type="action", **action))
            else:  # an agent's odd values: validated (coerced, or a clear error)
                events.append(ActionEvent.model_validate(action))
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
        seats=[
            s.model_copy(update={"system": systems[s.seat]}) if s.seat in systems else s
            for s in seating.seats
        ],
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
    # Built from records validated as they were made: no second pass over every event.
    return Transcript.model_construct(header=header, events=events, end=end)
