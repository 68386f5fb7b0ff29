"""Replay a transcript: show it round by round, or re-execute it and compare.

``check`` plays the trial again from its record: the seats from the trial's seed, the
scripted agents and scripted adversaries re-run from their seeds, and every LLM seat a
real ``LLMAgent`` whose model answers with the transcript's recorded raw replies, in
order, so each action and message is re-derived from its reply with the real parser
and the real prompts. Every difference from the recording is a mismatch, named by round,
player and event; an event missing from the transcript is one too.
"""

from __future__ import annotations

import asyncio
import difflib
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from stagbench.agents.models.base import (
    ChatMessage,
    GenerateConfig,
    ModelAPI,
    ModelOutput,
    OutputSchema,
)
from stagbench.agents.models.model import Model, Result
from stagbench.errors import StagbenchError
from stagbench.games import player_label
from stagbench.records import ActionEvent, MessageEvent, ModelCallEvent, ModelCallRecord, Transcript
from stagbench.runs.compose import AgentFactory, seat_agents
from stagbench.runs.trial import play

#: differences listed before the rest are only counted
MAX_PROBLEMS = 12
Event = dict[str, Any]


class _Recording(ModelAPI):
    """Never called: a recorded seat's model answers in ``_RecordedModel.generate``."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def generate(
        self,
        messages: list[ChatMessage],
        config: GenerateConfig,
        schema: OutputSchema | None = None,
    ) -> ModelOutput:  # pragma: no cover - _RecordedModel answers instead
        raise NotImplementedError


@dataclass
class _RecordedModel(Model):
    """One seat's model: each call gets the seat's next recorded reply, as the provider
    gave it (text, tokens, provenance), with the recorded latency, cost and cache flag."""

    recorded: deque[ModelCallRecord] = field(default_factory=deque)
    asked_more: int = 0

    async def generate(
        self,
        messages: list[ChatMessage],
        config: GenerateConfig,
        schema: OutputSchema | None = None,
        cache_seed: int | None = None,
    ) -> Result:
        if not self.recorded:
            self.asked_more += 1  # answered with nothing: the comparison shows where
            return Result(ModelOutput(text=""), 0.0, 0.0, False, 1)
        call = self.recorded.popleft()
        out = ModelOutput(
            text=call.raw or "",
            input_tokens=call.input_tokens,
            output_tokens=call.output_tokens,
            model=call.response_model or "",
            finish_reason=call.finish_reason,
            system_fingerprint=call.system_fingerprint,
            request_id=call.request_id,
        )
        return Result(out, call.latency_s, call.cost_usd, call.cached, 1)


class _Rebuild(AgentFactory):
    """The run's own factory (scripted agents and adversaries from their seeds), with each
    LLM seat's model answering from the transcript."""

    def __init__(self, transcript: Transcript) -> None:
        super().__init__(transcript.header.trial)
        self.calls: dict[int, deque[ModelCallRecord]] = {}
        for e in transcript.events:
            if isinstance(e, ModelCallEvent):
                self.calls.setdefault(e.seat, deque()).append(e.call)
        self.models: dict[int, _RecordedModel] = {}

    def model(self, name: str, seat: int) -> Model:
        m = _RecordedModel(api=_Recording(name), recorded=self.calls.get(seat, deque()))
        self.models[seat] = m
        return m


def _who(e: Event) -> str:
    seat = e.get("sender", e.get("seat"))
    return player_label(seat) if isinstance(seat, int) else "?"


def _where(e: Event) -> str:
    kind, r = e.get("type"), e.get("round")
    if kind == "message":
        return f"round {r} talk {e.get('phase')}: {_who(e)}'s message"
    if kind == "action":
        return f"round {r}: {_who(e)}'s action"
    if kind == "model_call":
        call = e.get("call", {})
        return f"round {r}: {_who(e)}'s {call.get('purpose')} call {call.get('attempt')}"
    if kind == "round_end":
        return f"round {r}'s end"
    return f"round {r}: a {kind} event"


def _key(e: Event) -> tuple[Any, ...]:
    call = e.get("call", {})
    return (e.get("type"), e.get("round"), e.get("phase"), _who(e), call.get("purpose"),
            call.get("attempt"))  # fmt: skip


def _short(v: Any, limit: int = 120) -> str:
    text = json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else repr(v)
    return text if len(text) <= limit else text[:limit] + "..."


def _prompt_difference(a: list[Event], b: list[Event]) -> str:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            at = next(
                (k for k, (p, q) in enumerate(zip(x["content"], y["content"], strict=False))
                 if p != q),
                min(len(x["content"]), len(y["content"])),
            )  # fmt: skip
            got = x["content"][max(0, at - 30) : at + 50]
            want = y["content"][max(0, at - 30) : at + 50]
            return f"message {i + 1} differs at character {at}: recorded ...{got!r}..., the " \
                   f"templates give ...{want!r}..."  # fmt: skip
    return f"recorded {len(a)} messages, the templates give {len(b)}"


def _differences(a: Event, b: Event) -> list[str]:
    """How one recorded event differs from its replay, field by field."""
    where = _where(a)
    out = []
    if a.get("type") == "model_call":
        ca, cb = a["call"], b["call"]
        for k in sorted(set(ca) | set(cb)):
            if ca.get(k) == cb.get(k):
                continue
            if k == "messages":
                detail = _prompt_difference(ca.get(k) or [], cb.get(k) or [])
                out.append(f"{where}: the prompt differs: {detail}")
            else:
                verb = "the parser gives" if k in ("parsed", "parse_ok", "error") else "replay:"
                out.append(f"{where}: recorded {k} {_short(ca.get(k))}, {verb} {_short(cb.get(k))}")
        return out
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            out.append(f"{where}: recorded {k} {_short(a.get(k))}, the replay gives "
                       f"{_short(b.get(k))}")  # fmt: skip
    return out


def _summary(e: Event) -> str:
    if e.get("type") == "action":
        return f"action {e.get('action')!r}"
    if e.get("type") == "message":
        return f"message {_short(e.get('text'), 60)}"
    if e.get("type") == "model_call":
        return f"a call answered {_short(e['call'].get('raw'), 60)}"
    return _short({k: v for k, v in e.items() if k != "type"}, 80)


def compare_events(recorded: list[Event], replayed: list[Event]) -> list[str]:
    """Every difference between two event lists, aligned so that a missing or extra event
    is named as such rather than shifting every event after it."""
    out: list[str] = []
    matcher = difflib.SequenceMatcher(
        None, [_key(e) for e in recorded], [_key(e) for e in replayed], autojunk=False
    )
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        pairs = min(i2 - i1, j2 - j1) if op == "replace" else (i2 - i1 if op == "equal" else 0)
        for k in range(pairs):
            a, b = recorded[i1 + k], replayed[j1 + k]
            if a != b:
                out += _differences(a, b)
        for a in recorded[i1 + pairs : i2]:
            out.append(f"{_where(a)} is in the transcript, but the replay has no such event")
        for b in replayed[j1 + pairs : j2]:
            out.append(f"{_where(b)} is missing from the transcript (the replay gives "
                       f"{_summary(b)})")  # fmt: skip
    return out


def check(transcript: Transcript) -> list[str]:
    """Re-execute the trial (see the module docstring); every mismatch found, in words."""
    header = transcript.header
    trial = header.trial
    factory = _Rebuild(transcript)
    try:
        seating = seat_agents(trial, factory)
    except StagbenchError as exc:
        return [f"the trial's seats cannot be built again from its record: {exc}"]
    problems: list[str] = []
    recorded_seats = [s.model_copy(update={"system": None}) for s in header.seats]
    if seating.seats != recorded_seats and len(set(trial.models)) > 1:
        # a mixed population dealt from the start of its list, as stagbench did before
        # ``compose.honest_models`` dealt the seats left over at random: a transcript of
        # then is checked against the dealing that made it
        legacy_factory = _Rebuild(transcript)
        legacy = seat_agents(trial, legacy_factory, legacy=True)
        if legacy.seats == recorded_seats:
            seating, factory = legacy, legacy_factory
    if seating.seats != recorded_seats:
        problems.append(
            f"seating differs: recorded {recorded_seats}, the seed gives {seating.seats}"
        )
    if seating.topology.edges() != [tuple(e) for e in header.edges]:
        problems.append("topology edges differ from the recorded ones")
    try:
        replayed = asyncio.run(play(trial, header.spec_name, seating))
    except StagbenchError as exc:
        return [*problems, f"the trial does not play again from its record: {exc}"]
    for a, b in zip(header.seats, replayed.header.seats, strict=False):
        if a.system != b.system and b.system is not None:
            problems.append(f"{player_label(a.seat)}'s system prompt differs from the one the "
                            "templates give")  # fmt: skip
    events = compare_events(
        [e.model_dump(mode="json") for e in transcript.events],
        [e.model_dump(mode="json") for e in replayed.events],
    )
    if len(events) > MAX_PROBLEMS:
        events = [*events[:MAX_PROBLEMS], f"... and {len(events) - MAX_PROBLEMS} more differences"]
    problems += events
    for seat, m in sorted(factory.models.items()):
        if m.recorded:
            problems.append(f"{player_label(seat)}: {len(m.recorded)} recorded model call(s) the "
                            "replay never makes")  # fmt: skip
        if m.asked_more:
            problems.append(f"{player_label(seat)} asks its model {m.asked_more} more time(s) "
                            "than the transcript records")  # fmt: skip
    end_a, end_b = transcript.end, replayed.end
    if (end_a.rounds_played, end_a.totals, end_a.parse_failures) != (
        end_b.rounds_played,
        end_b.totals,
        end_b.parse_failures,
    ):
        problems.append(f"outcome differs: recorded {end_a.totals}, replayed {end_b.totals}")
    elif end_a != end_b:
        problems.append(f"the trial's end differs: recorded {end_a}, replayed {end_b}")
    return problems


def render(transcript: Transcript, console: Console, only_round: int | None = None) -> None:
    """Round by round: who said what to whom, then actions and payoffs."""
    h = transcript.header
    t = h.trial
    console.print(f"[bold]Trial {t.trial_id}[/] of spec [bold]{h.spec_name}[/] (seed {t.seed})")
    console.print(
        f"  {t.game.n_players} players, {t.game.rounds} rounds, stag needs {t.game.stag_needed}; "
        f"payoffs stag {t.game.stag_payoff:g} / hare {t.game.hare_payoff:g} / failed stag "
        f"{t.game.failed_stag_payoff:g}"
    )
    console.print(
        f"  topology [cyan]{t.topology}[/] ({t.disclosure.value}), adversary {t.adversary.label},"
        f" condition {t.condition}"
    )
    for s in h.seats:
        role = f"[red]{s.adversary}[/]" if s.role == "adversary" else "honest"
        console.print(f"  {player_label(s.seat)}: {s.model} ({role})")
    rounds = sorted({e.round for e in transcript.events})
    for r in rounds:
        if only_round is not None and r != only_round:
            continue
        console.rule(f"Round {r}")
        for e in transcript.events:
            if e.round != r:
                continue
            if isinstance(e, MessageEvent):
                who = player_label(e.sender)
                if e.text is None:
                    note = " [red](parse failure)[/]" if e.parse_failed else ""
                    console.print(f"  [dim]{who} stays silent{note}[/]")
                else:
                    to = ", ".join(player_label(x) for x in e.receivers) or "nobody"
                    console.print(f"  {who} -> {to}: [italic]{e.text!r}[/]")
        table = Table("player", "action", "payoff", "reasoning")
        end = next(ev for ev in transcript.events if ev.type == "round_end" and ev.round == r)
        for e in transcript.events:
            if isinstance(e, ActionEvent) and e.round == r:
                act = e.action or "[red]no valid action[/]"
                table.add_row(
                    player_label(e.seat), act, f"{end.payoffs[e.seat]:g}", (e.reasoning or "")[:80]
                )
        console.print(table)
        verdict = "succeeded" if end.hunt_succeeded else "failed"
        console.print(f"  stag hunters: {end.stag_count}; the hunt {verdict}")
    console.rule("Totals")
    totals = ", ".join(f"{player_label(i)} {v:g}" for i, v in enumerate(transcript.end.totals))
    console.print(f"  {totals}")
    if transcript.end.input_tokens or transcript.end.output_tokens:
        console.print(
            f"  tokens in/out {transcript.end.input_tokens}/{transcript.end.output_tokens}, "
            f"cost ${transcript.end.cost_usd:.4f}, parse failures {transcript.end.parse_failures}"
        )
