"""Experiment specs (TOML) validated by pydantic and expanded into trials with stable ids.

A spec is a factorial design: models x conditions x topologies x disclosures x
adversaries (x prompt wordings x defences x payloads, when the spec crosses them) x
repetitions. Each trial's id and seed are hashes of its content, so a trial keeps its id
when the spec around it grows, and a resumed run finds it again.

Payloads are crossed as matched sets: trials that differ only in what the adversaries say
share one seed (the hash of their content without the payload), hence the same seats,
placement and sampling seeds, and one ``match`` key that analysis pairs them by.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import json
import math
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from stagbench.adversaries import (
    ADVERSARIES,
    PLACEMENTS,
    check_adversary,
    inner_model,
    placement_warnings,
)
from stagbench.agents.models.settings import ModelSettings
from stagbench.agents.prompts import MIN_MESSAGE_CHARS, PARAPHRASES, talk_schema
from stagbench.errors import SpecError, StagbenchError
from stagbench.records import (
    AdversarySpec,
    AgentSettings,
    AnalysisSettings,
    Disclosure,
    GameConfig,
    PayloadSpec,
    TrialSpec,
    in_shard,
)
from stagbench.records.numbers import Float, Int
from stagbench.registry import normalise, parse_call
from stagbench.runs.compose import check_model_string, is_scripted
from stagbench.runs.preflight import (
    check_cells,
    check_models,
    environment_problems,
    price_problems,
    price_warnings,
    settings_warnings,
    split_problems,
)
from stagbench.topologies import TOPOLOGIES, build_topology, inline_graph, read_graph_file

__all__ = [
    "AdversarySpec",
    "ConditionSpec",
    "ExperimentSpec",
    "Factors",
    "PayloadSpec",
    "TrialSpec",
    "payload_param",
]

_ADVERSARY_FIELDS = ("count", "placement", "colluding", "model")

#: the most players a game may have: a trial's seats, graph and per-round records grow with
#: it (the complete graph with its square), so a design of absurd size is refused up front
MAX_PLAYERS = 1000
#: the largest payoff magnitude a game may have: totals over every round stay finite and
#: exact enough to audit (a transcript's totals are re-derived from its payoffs)
MAX_PAYOFF = 1e9
_PAYOFFS = ("stag_payoff", "hare_payoff", "failed_stag_payoff", "invalid_payoff")


def parse_adversary(data: Any) -> Any:
    """``"delayed(k=2,count=2,placement=hub,colluding=True)"`` as an ``AdversarySpec``
    table: the seat fields apart, the rest the kind's own parameters. Tables pass as they
    are; which kinds exist is checked against the registry in ``ExperimentSpec.check``."""
    if not isinstance(data, str):
        return data
    try:
        kind, params = parse_call(data, "adversary", SpecError)
    except StagbenchError as exc:
        raise ValueError(str(exc)) from exc
    out: dict[str, Any] = {"kind": kind}
    for key in _ADVERSARY_FIELDS:
        if key in params:
            out[key] = params.pop(key)
    out["params"] = params
    return out


class ConditionSpec(BaseModel):
    """A named set of game overrides, e.g. ``{name="hidden", horizon_disclosed=false}``."""

    model_config = ConfigDict(frozen=True, extra="allow")

    name: str

    def overrides(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Factors(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[str | list[str]] = Field(min_length=1)
    topologies: list[str] = Field(default_factory=lambda: ["complete"], min_length=1)
    disclosures: list[Disclosure] = Field(
        default_factory=lambda: [Disclosure.EXPLICIT], min_length=1
    )
    adversaries: list[AdversarySpec] = Field(
        default_factory=lambda: [AdversarySpec(kind="none")], min_length=1
    )
    conditions: list[ConditionSpec] = Field(
        default_factory=lambda: [ConditionSpec(name="base")], min_length=1
    )
    #: paraphrase sets of the prompts (``agents.prompt_variant`` when not crossed)
    prompt_variants: list[str] | None = Field(None, min_length=1)
    #: ``none`` / ``delimit`` (``agents.defence`` when not crossed)
    defences: list[Literal["none", "delimit"]] | None = Field(None, min_length=1)
    #: what the adversaries say, as matched sets (see the module docstring)
    payloads: list[PayloadSpec] | None = Field(None, min_length=2)

    @field_validator("payloads")
    @classmethod
    def _one_control(cls, v: list[PayloadSpec] | None) -> list[PayloadSpec] | None:
        if v is None:
            return v
        names = [p.name for p in v]
        if len(set(names)) != len(names):
            raise ValueError(f"payload names must be unique: {names}")
        marked = [p.name for p in v if p.control]
        if len(marked) > 1:
            raise ValueError(f"only one payload can be the control, not {marked}")
        if not marked:  # the first level is the control
            v = [v[0].model_copy(update={"control": True}), *v[1:]]
        return v

    @field_validator("adversaries", mode="before")
    @classmethod
    def _adversary_strings(cls, v: Any) -> Any:
        return [parse_adversary(x) for x in v] if isinstance(v, list) else v

    @field_validator("models")
    @classmethod
    def _non_empty_populations(cls, v: list[str | list[str]]) -> list[str | list[str]]:
        for entry in v:
            if isinstance(entry, list) and not entry:
                raise ValueError("a mixed population (a list of models) cannot be empty")
        return v


def _check_name(name: str) -> str:
    """A spec's name names its results folder (``results/<name>``): a name, never a path."""
    if (
        any(c in name for c in "/\\")
        or name in (".", "..")
        or name.startswith((".", "~", "-"))
        or any(ord(c) < 32 or ord(c) == 127 for c in name)
    ):
        raise ValueError(
            f"{name!r} is not a name: it must not hold / or \\, start with . ~ or -, or hold "
            "control characters (it names the results folder results/<name>)"
        )
    return name


class ExperimentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    seed: Int = 0
    repetitions: Int = Field(1, ge=1)
    game: GameConfig = Field(default_factory=GameConfig)
    agents: AgentSettings = Field(default_factory=AgentSettings)
    factors: Factors
    model_settings: dict[str, ModelSettings] = Field(default_factory=dict)
    #: a cost limit for the whole run (USD); per-model limits are max_cost_usd in model_settings
    budget_usd: Float | None = Field(None, ge=0)
    #: how analysis reads the cheap talk (vocabularies of the lexical detectors); not part
    #: of the design, so changing it does not change the spec's hash
    analysis: AnalysisSettings = Field(default_factory=AnalysisSettings)

    @field_validator("name")
    @classmethod
    def _name_is_a_name(cls, v: str) -> str:
        return _check_name(v)

    @property
    def n_trials(self) -> int:
        """How many trials the design has, counted without expanding it."""
        return self.n_cells * self.repetitions

    @property
    def n_cells(self) -> int:
        f = self.factors
        lists: list[list[Any]] = [f.models, f.conditions, f.topologies, f.disclosures]
        # an arm that says something runs once per payload level
        levels = len(f.payloads or ()) or 1
        arms = sum(levels if f.payloads and payload_param(a) else 1 for a in f.adversaries)
        return math.prod(len(x) for x in lists) * arms * len(self.agent_settings())

    def condition_game(self, cond: ConditionSpec) -> GameConfig:
        """A condition's game: ``[game]`` with the condition's overrides, validated (a
        ``ValidationError`` for a broken one)."""
        return GameConfig.model_validate({**self.game.model_dump(), **cond.overrides()})

    def agent_settings(self) -> list[AgentSettings]:
        """``[agents]`` crossed with the prompt wordings and defences the spec varies.
        Uncrossed, it is ``[agents]`` itself, so those trials keep their ids."""
        f = self.factors
        variants = f.prompt_variants or [self.agents.prompt_variant]
        defences = f.defences or [self.agents.defence]
        if variants == [self.agents.prompt_variant] and defences == [self.agents.defence]:
            return [self.agents]
        return [
            self.agents.model_copy(update={"prompt_variant": v, "defence": d})
            for v, d in itertools.product(variants, defences)
        ]

    def trials(self) -> list[TrialSpec]:
        """Expand the factorial design; order is stable and ids are content hashes.
        A big design is better streamed with ``iter_trials``."""
        return list(self.iter_trials())

    def cells(self) -> Iterator[TrialSpec]:
        """The first repetition of every cell of the design: what checks and estimates need."""
        return self.iter_trials(repetitions=1)

    def iter_trials(self, repetitions: int | None = None) -> Iterator[TrialSpec]:
        """The trials of ``trials()``, one at a time (a design of a billion trials streams)."""
        f = self.factors
        games: dict[str, GameConfig] = {}
        for models, cond, topo, disc, adv, agents in itertools.product(
            f.models, f.conditions, f.topologies, f.disclosures, f.adversaries,
            self.agent_settings(),
        ):  # fmt: skip
            if cond.name not in games:
                games[cond.name] = self.condition_game(cond)
            game = games[cond.name]
            population = (models,) if isinstance(models, str) else tuple(models)
            param = payload_param(adv) if f.payloads else None
            content = {
                "seed": self.seed,
                "condition": cond.name,
                "game": game.model_dump(mode="json"),
                "models": list(population),
                "topology": topo,
                "disclosure": disc.value,
                "adversary": adv.model_dump(mode="json"),
                "agents": agents.model_dump(mode="json"),
            }
            cell = _RepDigest(content)  # the cell's content is the same for every repetition
            arms = []
            if param is not None:
                for level in f.payloads or ():
                    said = adv.model_copy(update={"params": {**adv.params, param: level.text}})
                    arm = {**content, "adversary": said.model_dump(mode="json"),
                           "payload": level.model_dump(mode="json")}  # fmt: skip
                    arms.append((level, said, _RepDigest(arm)))
            common = {
                "condition": cond.name,
                "game": game,
                "models": population,
                "topology": topo,
                "disclosure": disc,
                "agents": agents,
            }
            for rep in range(self.repetitions if repetitions is None else repetitions):
                base = cell(rep)
                if not arms:
                    yield TrialSpec(trial_id=base[:16], seed=_seed(base), repetition=rep,
                                    adversary=adv, **common)  # fmt: skip
                    continue
                for level, said, arm_digest in arms:
                    digest = arm_digest(rep)
                    yield TrialSpec(trial_id=digest[:16], seed=_seed(base), repetition=rep,
                                    adversary=said, payload=level, match=base[:16],
                                    **common)  # fmt: skip

    def model_strings(self) -> list[str]:
        """Every model a trial of this design may call or play: honest seats' and the
        models inside adversary seats."""
        models = {m for e in self.factors.models for m in ([e] if isinstance(e, str) else e)}
        populations = [(e,) if isinstance(e, str) else tuple(e) for e in self.factors.models]
        for adv in self.factors.adversaries:
            try:
                models |= {inner_model(adv.kind, pop, adv.model) for pop in populations}
            except StagbenchError:
                continue  # an unknown kind: check() says so
        return sorted(models)

    def environment_problems(self) -> list[str]:
        """What this machine lacks to run the spec (packages, API keys): ``validate`` warns,
        ``run`` refuses."""
        return environment_problems(self.model_strings(), self.model_settings)

    def split_problems(self, k: int) -> list[str]:
        """Why the spec's model limits cannot be split over ``k`` processes or Ray tasks
        (``preflight.split_problems``); empty when they can."""
        return split_problems(self.model_strings(), self.model_settings, k)

    def warnings(self) -> list[str]:
        """What is allowed but probably not meant: payoffs that are not a Stag Hunt, a
        token cap that leaves LLM agents' messages very short, a cost limit that cannot see
        a model's calls (no price known for it: ``preflight.price_warnings``), settings this
        machine ignores (a vLLM server's start options beside VLLM_BASE_URL)."""
        out = []
        for cond in self.factors.conditions:
            try:
                g = self.condition_game(cond)
            except ValidationError:
                continue  # check() reports it
            if not g.is_stag_hunt:
                out.append(
                    f"condition {cond.name!r}: payoffs stag {g.stag_payoff:g}, hare "
                    f"{g.hare_payoff:g}, failed stag {g.failed_stag_payoff:g} are not a Stag "
                    "Hunt (it needs stag > hare > failed stag)"
                )
            out += [f"condition {cond.name!r}: {w}" for w in self._game_warnings(g)]
        out += self._adversary_warnings()
        levels = self.factors.payloads or []
        control = next((p for p in levels if p.control), levels[0] if levels else None)
        for p in levels:
            if control is not None and p is not control and p.text.strip() == control.text.strip():
                out.append(
                    f"payload {p.name!r} says what the control {control.name!r} says: its "
                    "adversaries' talk never differs from the control's, so no target is "
                    "exposed to it and its injection measures have no value"
                )
        if any(not is_scripted(m) for m in self.model_strings()):
            a = self.agents
            room = talk_schema(a.max_tokens).json_schema["properties"]["message"]["maxLength"]
            if self.game.talk_phases > 0 and room < MIN_MESSAGE_CHARS:
                out.append(
                    f"agents.max_tokens = {a.max_tokens} leaves a message {room} characters "
                    "(the schema's maxLength, so that a reply can close within the cap); "
                    "raise max_tokens for longer messages"
                )
        used = self.model_strings()
        for key in sorted(self.model_settings):
            if not any(key in (m, m.split("/", 1)[0]) for m in used):
                out.append(
                    f"model_settings.{json.dumps(key)} is for a model (or provider) this "
                    f"design does not use ({', '.join(used)}); it is ignored"
                )
        out += price_warnings(used, self.model_settings, self.budget_usd)
        return out + settings_warnings(used, self.model_settings)

    def _game_warnings(self, g: GameConfig) -> list[str]:
        """A game that runs but tests less than it seems (rt40): stag that cannot fail, an
        unreadable answer that pays more than a hunt, factors that act only through the
        cheap talk of a game without it, a delayed betrayer that never reaches its round."""
        out = []
        if (g.threshold or g.n_players) <= 1:
            out.append(
                "a stag threshold of 1: a stag hunter always succeeds, so stag beats hare "
                "whatever the others do; there is no coordination problem to measure"
            )
        if g.invalid_payoff >= g.stag_payoff:
            out.append(
                f"invalid_payoff {g.invalid_payoff:g} is not below the stag payoff "
                f"{g.stag_payoff:g}: an answer that cannot be read pays as much as a hunt"
            )
        elif g.invalid_payoff > g.hare_payoff:
            out.append(
                f"invalid_payoff {g.invalid_payoff:g} is above the hare payoff "
                f"{g.hare_payoff:g}: an answer that cannot be read pays more than the safe "
                "choice"
            )
        if g.talk_phases == 0:
            f = self.factors
            inert = [
                name
                for name, levels in (
                    ("topologies", f.topologies),
                    ("disclosures", f.disclosures),
                    ("defences", f.defences or []),
                    ("payloads", f.payloads or []),
                )
                if len(levels) > 1
            ]
            if inert:
                out.append(
                    f"talk_phases = 0: the {', '.join(inert)} act only on cheap talk, so "
                    "their levels play alike here"
                )
            if any(a.kind != "none" and a.count for a in f.adversaries):
                out.append(
                    "talk_phases = 0: no adversary can signal stag, so betrayal (a stag "
                    "signal, then hare) cannot happen: its counts and detection are not "
                    "measured here"
                )
        for adv in self.factors.adversaries:
            k = adv.params.get("k", 2)
            if adv.kind == "delayed" and adv.count and isinstance(k, int) and k >= g.rounds:
                out.append(
                    f"adversary {adv.label}: delayed(k={k}) betrays from round {k + 1}, "
                    f"after the game's {g.rounds} rounds: it never betrays"
                )
        return out

    def _player_counts(self, talking: bool = False) -> list[int]:
        """The numbers of players the conditions play with (broken conditions left out:
        ``check`` reports them); ``talking``: of those with cheap talk only."""
        ns = set()
        for cond in self.factors.conditions:
            try:
                g = self.condition_game(cond)
            except ValidationError:
                continue
            if g.talk_phases > 0 or not talking:
                ns.add(g.n_players)
        return sorted(ns)

    def _adversary_warnings(self) -> list[str]:
        """Adversary arms that run but probably not as meant: no honest seat left, a
        colluding "group" of one, a placement by centrality that can seat an adversary
        with no edge or that reads the other way by in-degree (``placement_warnings``)."""
        out = []
        ns, talkers = self._player_counts(), self._player_counts(talking=True)
        for adv in self.factors.adversaries:
            if adv.kind == "none" or adv.count == 0:
                continue
            if adv.count in ns:
                out.append(
                    f"adversary {adv.label}: {adv.count} adversaries among {adv.count} players "
                    "leave no honest seat: every honest player's measure is empty"
                )
            if adv.colluding and adv.count == 1:
                out.append(
                    f"adversary {adv.label}: colluding=True with a single adversary: there is "
                    "no group to share a plan with or vouch for"
                )
            for n in talkers:  # the graph only carries talk
                for topo in self.factors.topologies:
                    try:
                        built = build_topology(topo, n)
                    except StagbenchError:
                        continue  # check() reports it
                    size = f", {n} players" if len(talkers) > 1 else ""
                    out += [
                        f"adversary {adv.label} on topology {topo!r}{size}: {w}"
                        for w in placement_warnings(adv.placement, built, adv.count)
                    ]
        return list(dict.fromkeys(out))

    def check(self) -> None:
        """Fail early on anything a trial would fail on: topologies, models, adversaries."""
        problems: list[str] = []
        for cond in self.factors.conditions:
            try:
                game = self.condition_game(cond)
            except ValidationError as exc:
                problems.append(f"condition {cond.name!r}: {_first_error(exc)}")
                continue
            too_big = _game_problems(game)
            if too_big:  # nothing is built for a game this size
                problems += [f"condition {cond.name!r}: {p}" for p in too_big]
                continue
            n = game.n_players
            for topo in self.factors.topologies:
                try:
                    build_topology(topo, n)
                except StagbenchError as exc:
                    problems.append(f"topology {topo!r}: {exc}")
            for adv in self.factors.adversaries:
                if adv.count > n:
                    problems.append(f"adversary {adv.label}: count {adv.count} exceeds {n} players")
                if isinstance(adv.placement, str) and adv.placement not in PLACEMENTS:
                    problems.append(
                        f"adversary {adv.label}: unknown placement {adv.placement!r}; use one "
                        f"of {', '.join(PLACEMENTS)} or a list of seats"
                    )
                if isinstance(adv.placement, list) and (
                    len(adv.placement) != adv.count
                    or len(set(adv.placement)) != len(adv.placement)
                    or any(not 0 <= s < n for s in adv.placement)
                ):
                    problems.append(
                        f"adversary {adv.label}: placement {adv.placement} must list "
                        f"{adv.count} distinct seats in 0..{n - 1}"
                    )
        problems += _agent_problems(self.agents)
        variants = {self.agents.prompt_variant, *(self.factors.prompt_variants or [])}
        for v in sorted(variants - set(PARAPHRASES)):
            problems.append(f"unknown prompt_variant {v!r}; known: {', '.join(PARAPHRASES)}")
        if self.factors.payloads:
            crossed = [a for a in self.factors.adversaries if payload_param(a)]
            if not crossed:
                problems.append(
                    "payloads need an adversary arm that says them (one of: "
                    + ", ".join(n for n, k in ADVERSARIES.items() if k.payload)
                    + ")"
                )
            for adv in crossed:
                param = payload_param(adv)
                if param in adv.params:
                    problems.append(
                        f"adversary {adv.label}: the payloads factor sets {param!r}; "
                        "leave it out of the arm"
                    )
        names = [c.name for c in self.factors.conditions]
        if len(set(names)) != len(names):
            problems.append(f"condition names must be unique: {names}")
        problems += _duplicates(self.factors)
        models = {m for e in self.factors.models for m in ([e] if isinstance(e, str) else e)}
        models |= {a.model for a in self.factors.adversaries if a.model}
        for m in sorted(models):
            try:
                check_model_string(m)
            except StagbenchError as exc:
                problems.append(str(exc))
        problems += check_models(sorted(models), self.model_settings)
        problems += price_problems(self.model_strings(), self.model_settings)
        populations = [(e,) if isinstance(e, str) else tuple(e) for e in self.factors.models]
        for adv in self.factors.adversaries:
            try:
                inners = {inner_model(adv.kind, pop, adv.model) for pop in populations}
                for inner in sorted(inners):
                    check_adversary(adv.kind, adv.params, inner)
            except StagbenchError as exc:
                problems.append(f"adversary {adv.label}: {exc}")
        if not problems:
            # What only building the seats shows (an agent setting an LLM agent refuses, a
            # wrapper that cannot wrap its seat), for one trial of every cell.
            problems += check_cells(self.cells())
        if problems:
            raise SpecError("invalid spec:\n  - " + "\n  - ".join(problems))


def _digest(content: dict[str, Any]) -> str:
    return hashlib.sha256(
        json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


class _RepDigest:
    """``_digest({**content, "repetition": rep})`` for every ``rep`` of one design cell,
    from the cell's JSON written once: only the repetition's digits differ between its
    trials (a design of a million trials is enumerated by every run and analysis)."""

    _MARK = -7315900417238914451  # stands in for the repetition: no real one is negative

    def __init__(self, content: dict[str, Any]) -> None:
        self.content = content
        text = json.dumps({**content, "repetition": self._MARK}, sort_keys=True,
                          separators=(",", ":"))  # fmt: skip
        parts = text.split(str(self._MARK))
        self.parts = (parts[0].encode(), parts[1].encode()) if len(parts) == 2 else None

    def __call__(self, rep: int) -> str:
        if self.parts is None:  # the mark also occurs in the content: the plain way
            return _digest({**self.content, "repetition": rep})
        head, tail = self.parts
        return hashlib.sha256(b"%b%d%b" % (head, rep, tail)).hexdigest()


def _seed(digest: str) -> int:
    return int(digest[16:32], 16) % (2**63)


def payload_param(adv: AdversarySpec) -> str | None:
    """The parameter of ``adv``'s kind that a ``payloads`` factor sets, or None when the
    arm says nothing a payload could replace (``none``, or a kind that takes none)."""
    if adv.kind == "none" or adv.count == 0:
        return None
    try:
        return ADVERSARIES.get(adv.kind).payload
    except StagbenchError:  # an unknown kind: ``check`` says so
        return None


def _game_problems(game: GameConfig) -> list[str]:
    """A game too big to play or to add up: more than ``MAX_PLAYERS`` players, or a payoff
    beyond ``MAX_PAYOFF`` (a trial's totals would overflow, or lose the exactness the audit
    of its transcript needs)."""
    out = []
    if game.n_players > MAX_PLAYERS:
        out.append(
            f"n_players {game.n_players} is more than stagbench supports (at most "
            f"{MAX_PLAYERS} players)"
        )
    for name in _PAYOFFS:
        value = getattr(game, name)
        if abs(value) > MAX_PAYOFF:
            out.append(
                f"{name} {value:g} is too large: a payoff's size must be at most "
                f"{MAX_PAYOFF:.0e}, so that every trial's totals over its rounds stay finite"
            )
    biggest = max(abs(getattr(game, name)) for name in _PAYOFFS)
    try:
        total = game.rounds * biggest
    except OverflowError:
        total = math.inf
    if not out and not math.isfinite(total):
        out.append(
            f"rounds {game.rounds} x payoff {biggest:g} is not a finite number: a trial's "
            "totals would overflow"
        )
    return out


def _agent_problems(agents: AgentSettings) -> list[str]:
    """Sampling settings no model takes (NaN is not a temperature; it is written as null)."""
    out = []
    t, top_p = agents.temperature, agents.top_p
    if t is not None and not (math.isfinite(t) and t >= 0):
        out.append(f"agents.temperature must be a finite number >= 0, not {t}")
    if top_p is not None and not 0 <= top_p <= 1:
        out.append(f"agents.top_p must lie in [0, 1], not {top_p}")
    return out


def _topology_key(topo: str) -> str:
    """What a topology string builds, whatever it is called: its kind's own name (not an
    alias: ``broadcast`` is ``complete``) and every parameter, defaults filled in
    (``star`` is ``star(hub=0)``). The string itself when it does not parse (``check``
    says why)."""
    try:
        name, params = parse_call(topo, "topology", SpecError)
        kind = TOPOLOGIES.get(name)
        bound = inspect.signature(kind.builder).bind(0, **params)
    except (StagbenchError, TypeError, ValueError):
        return topo
    bound.apply_defaults()
    args = dict(list(bound.arguments.items())[1:])  # not the number of players
    return json.dumps([kind.name, args], sort_keys=True, default=repr)


def _adversary_key(a: AdversarySpec) -> str:
    """An arm by what it does: every arm without adversaries (``none``, any ``count=0``)
    is one arm."""
    if a.kind == "none" or a.count == 0:
        return "none"
    return json.dumps(a.model_dump(mode="json"), sort_keys=True)


def _adversary_shown(a: AdversarySpec) -> str:
    if a.kind != "none" and a.count == 0:
        return repr(f"{a.kind}(count=0)")
    return repr(a.label)


def _duplicates(f: Factors) -> list[str]:
    """Factor entries given twice, or two entries that name one level (an alias, an arm
    without adversaries): each would give the same trials twice."""
    out = []
    lists: list[tuple[str, list[tuple[Any, str]]]] = [
        ("models", [(e if isinstance(e, str) else tuple(e), repr(e)) for e in f.models]),
        ("topologies", [(_topology_key(t), repr(t)) for t in f.topologies]),
        ("disclosures", [(d.value, repr(d.value)) for d in f.disclosures]),
        ("prompt_variants", [(v, repr(v)) for v in f.prompt_variants or []]),
        ("defences", [(d, repr(d)) for d in f.defences or []]),
        ("adversaries", [(_adversary_key(a), _adversary_shown(a)) for a in f.adversaries]),
    ]
    for name, entries in lists:
        seen: dict[Any, str] = {}
        for key, shown in entries:
            if key not in seen:
                seen[key] = shown
                continue
            first = seen[key]
            if first == shown:
                out.append(f"factors.{name} lists {shown} twice: remove the repeat")
            else:
                out.append(
                    f"factors.{name} lists {first} and {shown}, which are the same level "
                    "(the same trials twice): remove one"
                )
    return out


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    return f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"


def _format_validation(exc: ValidationError, source: str) -> str:
    lines = [f"invalid spec {source}:"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  - {loc}: {err['msg']}")
    return "\n".join(lines)


def inline_graph_files(spec: ExperimentSpec, base: Path | None) -> None:
    """Read each ``graph_file(path=...)`` topology (a relative path from ``base``, the
    spec's folder) and put its edges in its place (``edges(pairs=...)``): trials then
    carry the graph itself, so a run does not depend on where the file is, and a changed
    file makes new trials instead of changing old ones."""
    topologies = spec.factors.topologies
    for i, topo in enumerate(topologies):
        try:
            kind, params = parse_call(topo, "topology", SpecError)
        except StagbenchError:
            continue  # ``check`` says what is wrong with it
        if normalise(kind) != "graph_file" or "path" not in params:
            continue
        extra = set(params) - {"path", "directed"}
        if extra:
            raise SpecError(f"topology {topo!r}: unknown parameter(s) {sorted(extra)}")
        path = Path(str(params["path"])).expanduser()
        if not path.is_absolute() and base is not None:
            path = base / path
        try:
            graph = read_graph_file(path, params.get("directed"))
        except StagbenchError as exc:
            raise SpecError(f"topology {topo!r}: {exc}") from exc
        topologies[i] = inline_graph(graph, path.stem)


def parse_spec(
    text: str, source: str = "<string>", base_dir: str | Path | None = None
) -> ExperimentSpec:
    """Parse and validate spec text; every problem becomes a ``SpecError``. Graph files
    are read from ``base_dir`` (the spec's folder; default: the working directory)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{source} is not valid TOML: {exc}") from exc
    except RecursionError:
        raise SpecError(
            f"invalid spec {source}: its arrays or tables are nested too deeply to read"
        ) from None
    try:
        spec = ExperimentSpec.model_validate(data)
        inline_graph_files(spec, Path(base_dir) if base_dir is not None else None)
        spec.check()
    except ValidationError as exc:
        raise SpecError(_format_validation(exc, source)) from exc
    except RecursionError:  # a value nested deeper than validating it can go
        raise SpecError(f"invalid spec {source}: a value is nested too deeply") from None
    return spec


def load_spec(path: str | Path) -> tuple[ExperimentSpec, str]:
    """Read a spec file; returns the spec and its text (kept beside the results)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise SpecError(f"spec file not found: {p}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read spec file {p}: {exc}") from exc
    return parse_spec(text, str(p), p.parent), text


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/8"`` -> (2, 8): this process runs the trials whose id hashes to shard 2 of 8."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise SpecError(f"--shard must look like i/n (e.g. 0/4), not {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise SpecError(f"--shard {text}: need n >= 1 and 0 <= i < n")
    return i, n


def shard(trials: Iterable[TrialSpec], i: int, n: int) -> list[TrialSpec]:
    """The trials of shard i of n. Membership depends only on the trial id, so it is the
    same on every machine and survives growing the spec."""
    return list(iter_shard(trials, i, n))


def iter_shard(trials: Iterable[TrialSpec], i: int, n: int) -> Iterator[TrialSpec]:
    """``shard``, one trial at a time."""
    return (t for t in trials if in_shard(t.trial_id, i, n))
