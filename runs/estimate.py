"""Estimate calls, tokens and cost of a spec before spending anything.

Prompts are rendered with the real templates on a synthetic course of play (every
player hunts stag and says a typical one-line message), so input tokens follow the
real prompt growth; tokens are counted as characters / 4. Output tokens are assumed at
``OUTPUT_TOKENS`` per reply, capped by ``max_tokens``. Re-asks are not counted.

The repetitions of a cell of the design cost the same, so one trial per cell is
estimated and multiplied: a design of a billion trials is estimated, never expanded.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from stagbench.adversaries import ADVERSARIES
from stagbench.agents.base import AgentView, Message, PastRound
from stagbench.agents.models.pool import settings_for
from stagbench.agents.models.registry import price_for
from stagbench.agents.prompts import render_system, render_user
from stagbench.games import Action
from stagbench.runs.compose import adversary_model, honest_models, is_scripted
from stagbench.runs.spec import ExperimentSpec, TrialSpec
from stagbench.topologies import build_topology

TYPICAL_MESSAGE = "I will hunt stag this round, let's all cooperate."
OUTPUT_TOKENS = {"talk": 40, "act": 50}
CHARS_PER_TOKEN = 4


@dataclass
class ModelEstimate:
    model: str
    trials: int = 0
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = 0.0


def _llm_seats(trial: TrialSpec) -> list[tuple[str, bool]]:
    """(model, is_deceiver_with_enforced_action) for every seat run by an LLM."""
    n, adv = trial.game.n_players, trial.adversary
    n_honest = n - (adv.count if adv.kind != "none" else 0)
    honest = honest_models(trial, n_honest)
    seats = [(m, False) for m in honest if not is_scripted(m)]
    inner = adversary_model(trial)
    if adv.kind != "none" and not is_scripted(inner):
        # A wrapped LLM still talks and acts at times; one whose hare is enforced never acts.
        enforced = bool(adv.params.get("enforce_defect", ADVERSARIES.get(adv.kind).model_backed))
        seats += [(inner, enforced)] * adv.count
    return seats


def _trial_tokens(trial: TrialSpec) -> dict[str, int]:
    """Input tokens of one LLM seat (averaged over seats), per purpose, summed over rounds."""
    g = trial.game
    topo = build_topology(trial.topology, g.n_players)
    s = trial.agents
    delimit = s.defence == "delimit"
    totals = {"talk": 0, "act": 0}
    for seat in range(g.n_players):
        senders = topo.senders(seat)
        history: list[PastRound] = []
        for r in range(1, g.rounds + 1):
            inbox: list[Message] = []
            for phase in [*range(g.talk_phases), None]:
                view = AgentView(
                    seat=seat,
                    config=g,
                    round=r,
                    phase=phase,
                    topology=topo.view(seat, trial.disclosure),
                    history=tuple(history),
                    inbox=tuple(inbox),
                )
                chars = len(render_system(view, s.prompt_variant, delimit))
                chars += len(render_user(view, s.prompt_variant, delimit, s.reasoning))
                totals["talk" if phase is not None else "act"] += chars // CHARS_PER_TOKEN
                if phase is not None:
                    inbox += [Message(r, phase, x, (seat,), TYPICAL_MESSAGE) for x in senders]
            stag = (Action.STAG,) * g.n_players
            history.append(PastRound(r, stag, (g.stag_payoff,) * g.n_players, tuple(inbox), ()))
    return {k: v // g.n_players for k, v in totals.items()}


def estimate(spec: ExperimentSpec) -> list[ModelEstimate]:
    out: dict[str, ModelEstimate] = {}
    counted: dict[str, set[str]] = defaultdict(set)
    per_shape: dict[str, dict[str, int]] = {}
    reps = spec.repetitions
    for trial in spec.cells():
        seats = _llm_seats(trial)
        if not seats:
            continue
        shape = trial.model_dump_json(include={"game", "topology", "disclosure", "agents"})
        if shape not in per_shape:
            per_shape[shape] = _trial_tokens(trial)
        tokens = per_shape[shape]
        g = trial.game
        for model, enforced in seats:
            e = out.setdefault(model, ModelEstimate(model))
            if trial.trial_id not in counted[model]:
                counted[model].add(trial.trial_id)
                e.trials += reps
            talk_calls = g.rounds * g.talk_phases
            act_calls = 0 if enforced else g.rounds
            e.calls += reps * (talk_calls + act_calls)
            e.input_tokens += reps * (tokens["talk"] + (0 if enforced else tokens["act"]))
            cap = trial.agents.max_tokens
            e.output_tokens += reps * talk_calls * min(cap, OUTPUT_TOKENS["talk"])
            e.output_tokens += reps * act_calls * min(cap, OUTPUT_TOKENS["act"])
    for e in out.values():
        price = price_for(e.model, settings_for(e.model, spec.model_settings))
        e.cost_usd = price.cost(e.input_tokens, e.output_tokens) if price else None
    return sorted(out.values(), key=lambda e: e.model)
