"""Replay a transcript: show it round by round, or re-execute it from its recorded decisions."""

from __future__ import annotations

import asyncio
import random

from rich.console import Console
from rich.table import Table

from stagbench.adversaries import GroupPlan
from stagbench.agents.base import Agent, AgentView, Decision, Utterance
from stagbench.agents.scripted import AlwaysStag
from stagbench.games import Action, player_label
from stagbench.records import ActionEvent, MessageEvent, ModelCallEvent, Transcript
from stagbench.runs.compose import Seating, seat_agents
from stagbench.runs.trial import play
from stagbench.topologies import build_topology


class RecordedAgent:
    """Says and does exactly what one seat of a transcript said and did."""

    def __init__(self, transcript: Transcript, seat: int) -> None:
        self.messages = {
            (e.round, e.phase): e
            for e in transcript.events
            if isinstance(e, MessageEvent) and e.sender == seat
        }
        self.actions = {
            e.round: e for e in transcript.events if isinstance(e, ActionEvent) and e.seat == seat
        }

    async def speak(self, view: AgentView) -> Utterance:
        assert view.phase is not None
        m = self.messages.get((view.round, view.phase))
        if m is None:
            return Utterance(text=None)
        return Utterance(text=m.text, parse_failed=m.parse_failed, error=m.error)

    async def act(self, view: AgentView) -> Decision:
        a = self.actions[view.round]
        return Decision(
            action=None if a.action is None else Action(a.action),
            reasoning=a.reasoning,
            parse_failed=a.parse_failed,
            error=a.error,
        )


class _Placeholders:
    """Seats stand-ins: only the seating the seed gives is compared."""

    def build(self, model: str, seat: int, rng: random.Random) -> Agent:
        return AlwaysStag()

    def build_adversary(
        self, seat: int, inner: str, rng: random.Random, group: GroupPlan | None
    ) -> Agent:
        return AlwaysStag()


def check(transcript: Transcript) -> list[str]:
    """Re-execute the trial from its recorded decisions; return every mismatch found."""
    trial = transcript.header.trial
    problems: list[str] = []

    # 1. The seed must give the same seating (adversary seats and model shuffle).
    again = seat_agents(trial, _Placeholders())
    recorded_seats = [s.model_copy(update={"system": None}) for s in transcript.header.seats]
    if again.seats != recorded_seats:
        problems.append(
            f"seating differs: recorded {transcript.header.seats}, seed gives {again.seats}"
        )

    # 2. Replaying the decisions must give the same routing, reveals and payoffs.
    topo = build_topology(trial.topology, trial.game.n_players)
    if topo.edges() != [tuple(e) for e in transcript.header.edges]:
        problems.append("topology edges differ from the recorded ones")
    agents: list[Agent] = [RecordedAgent(transcript, s) for s in range(trial.game.n_players)]
    seating = Seating(seats=transcript.header.seats, agents=agents, topology=topo)
    replayed = asyncio.run(play(trial, transcript.header.spec_name, seating))
    recorded = [e for e in transcript.events if not isinstance(e, ModelCallEvent)]
    if len(replayed.events) != len(recorded):
        problems.append(f"{len(recorded)} events recorded, {len(replayed.events)} replayed")
    for i, (a, b) in enumerate(zip(recorded, replayed.events, strict=False)):
        if a != b:
            problems.append(f"event {i} differs: recorded {a!r}, replayed {b!r}")
            break
    end_a, end_b = transcript.end, replayed.end
    if (end_a.rounds_played, end_a.totals, end_a.parse_failures) != (
        end_b.rounds_played,
        end_b.totals,
        end_b.parse_failures,
    ):
        problems.append(f"outcome differs: recorded {end_a.totals}, replayed {end_b.totals}")
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
