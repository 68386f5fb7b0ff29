"""Composition: from a trial's record to the agents in its seats.

This is the one place that knows every kind of player: scripted strategies, LLM agents
on the run's model pool, and adversary wrappers around either. The layers below never
import one another for this (agents do not know adversaries exist).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from stagbench.adversaries import GroupPlan, inner_model, place, wrap_adversary
from stagbench.agents.base import Agent
from stagbench.agents.scripted import make_scripted
from stagbench.errors import ModelNotFoundError, StrategyError
from stagbench.records import SeatInfo, TrialSpec
from stagbench.topologies import Topology, build_topology

if TYPE_CHECKING:
    from stagbench.agents.models.model import Model
    from stagbench.agents.models.pool import ModelPool

SCRIPTED = "scripted"

# (model string, seat, rng) -> honest agent
AgentBuilder = Callable[[str, int, random.Random], Agent]


def check_model_string(model: str) -> None:
    """Raise a clear error for a model string that could never be built."""
    provider, sep, rest = model.partition("/")
    if not sep or not rest:
        raise ModelNotFoundError(
            f"model string {model!r} must look like provider/model, e.g. "
            "scripted/tit-for-tat, local/smollm2-135m or openai/gpt-4o-mini"
        )
    if provider == SCRIPTED:
        make_scripted(rest, random.Random(0))
        return
    from stagbench.agents.models.registry import resolve

    resolve(model)


def is_scripted(model: str) -> bool:
    return model.partition("/")[0] == SCRIPTED


def needs_models(trials: list[TrialSpec]) -> bool:
    """Whether any seat of these trials is played by a model (a pool is needed)."""
    return any(not is_scripted(m) for t in trials for m in (*t.models, adversary_model(t)))


def adversary_model(trial: TrialSpec) -> str:
    """The model inside the trial's adversary seats."""
    adv = trial.adversary
    return inner_model(adv.kind, trial.models, adv.model)


def seat_rng(trial: TrialSpec, label: str | int) -> random.Random:
    """An independent, reproducible generator for one seat or purpose of one trial."""
    return random.Random(f"{trial.seed}:{label}")


class SeatBuilder(Protocol):
    """What ``seat_agents`` needs: honest agents, and adversaries around an inner model."""

    def build(self, model: str, seat: int, rng: random.Random) -> Agent: ...

    def build_adversary(
        self, seat: int, inner: str, rng: random.Random, group: GroupPlan | None
    ) -> Agent: ...


class AgentFactory:
    """Builds the agents of one trial; LLM agents share models from the run's pool."""

    def __init__(self, trial: TrialSpec, pool: ModelPool | None = None) -> None:
        self.trial = trial
        self.pool = pool

    def model(self, name: str, seat: int) -> Model:
        """The model an LLM seat calls: the run's pool's, one per model string (replay
        gives each seat its recorded replies instead)."""
        if self.pool is None:
            raise StrategyError(f"model {name!r} needs a model pool; none was given")
        return self.pool.get(name)

    def build(self, model: str, seat: int, rng: random.Random) -> Agent:
        provider, _, rest = model.partition("/")
        if provider == SCRIPTED:
            return make_scripted(rest, rng)
        from stagbench.agents.llm import LLMAgent

        return LLMAgent(
            model=self.model(model, seat),
            seat=seat,
            settings=self.trial.agents,
            seed=rng.randrange(2**31),
        )

    def build_adversary(
        self, seat: int, inner: str, rng: random.Random, group: GroupPlan | None
    ) -> Agent:
        adv = self.trial.adversary
        return wrap_adversary(adv.kind, dict(adv.params), self.build(inner, seat, rng), seat,
                              rng, group)  # fmt: skip


@dataclass
class Seating:
    seats: list[SeatInfo]
    agents: list[Agent]
    topology: Topology


def honest_models(trial: TrialSpec, seats: int, legacy: bool = False) -> list[str]:
    """The models of a trial's ``seats`` honest seats (before they are shuffled over the
    seats): every entry of the population list ``seats // len(list)`` times, and the
    ``seats % len(list)`` seats left over to as many different entries drawn at random by
    the trial's seed. Each entry thus has the same expected share of the honest seats
    whatever their number: an adversary arm, which leaves fewer honest seats, does not
    drop the list's last models (dealt from its start, ``[a, b]`` over one honest seat was
    always ``a``, so the arm's "effect" was partly a change of population). ``legacy``:
    that dealing from the start, which made the transcripts of stagbench before this fix
    (``runs.replay`` re-deals an older transcript so)."""
    models = trial.models
    if legacy:
        return [models[i % len(models)] for i in range(seats)]
    whole, left = divmod(seats, len(models))
    population = list(models) * whole
    if left:  # (a draw of its own: a list that divides the seats is dealt as it always was)
        picked = seat_rng(trial, "population").sample(range(len(models)), left)
        population += [models[i] for i in sorted(picked)]
    return population


def seat_agents(trial: TrialSpec, factory: SeatBuilder, legacy: bool = False) -> Seating:
    """Place adversaries, then shuffle the honest population (``honest_models``, dealt as
    before its fix when ``legacy``) over the remaining seats."""
    n = trial.game.n_players
    rng = random.Random(trial.seed)
    topo = build_topology(trial.topology, n)
    adv = trial.adversary
    adv_seats = place(adv.placement, topo, adv.count, rng) if adv.kind != "none" else ()
    honest = [s for s in range(n) if s not in adv_seats]
    population = honest_models(trial, len(honest), legacy)
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
            inner = adversary_model(trial)
            agents.append(factory.build_adversary(s, inner, r, group))
            seats.append(SeatInfo(seat=s, model=inner, role="adversary", adversary=adv.label))
        else:
            agents.append(factory.build(model_of[s], s, r))
            seats.append(SeatInfo(seat=s, model=model_of[s], role="honest"))
    return Seating(seats=seats, agents=agents, topology=topo)


def json_asker(
    pool: ModelPool, model: str, *, max_tokens: int = 60, name: str = "judgement"
) -> Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]:
    """A one-prompt JSON question to ``model`` on ``pool`` (for ``analysis.judge``):
    structured output where the provider has it, the reply's JSON object out."""
    from stagbench.agents.llm import extract_json
    from stagbench.agents.models.base import ChatMessage, GenerateConfig, OutputSchema

    m = pool.get(model)
    config = GenerateConfig(temperature=0.0, max_tokens=max_tokens, seed=0)

    async def ask(prompt: str, schema: dict[str, Any]) -> dict[str, Any]:
        messages = [ChatMessage(role="user", content=prompt)]
        wanted = OutputSchema(name=name, json_schema=schema).within_tokens(max_tokens)
        res = await m.generate(messages, config, wanted)
        return extract_json(res.output.text)

    return ask
