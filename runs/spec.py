"""Experiment specs (TOML) validated by pydantic and expanded into trials with stable ids.

A spec is a factorial design: models x conditions x topologies x disclosures x
adversaries x repetitions. Each trial's id and seed are hashes of its content, so a
trial keeps its id when the spec around it grows, and a resumed run finds it again.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from stagbench.adversaries import PLACEMENTS, check_adversary, inner_model
from stagbench.agents.models.settings import ModelSettings
from stagbench.errors import SpecError, StagbenchError
from stagbench.records import (
    AdversarySpec,
    AgentSettings,
    AnalysisSettings,
    Disclosure,
    GameConfig,
    TrialSpec,
)
from stagbench.registry import parse_call
from stagbench.runs.compose import check_model_string
from stagbench.runs.preflight import check_cells, check_models, environment_problems
from stagbench.topologies import build_topology

__all__ = ["AdversarySpec", "ConditionSpec", "ExperimentSpec", "Factors", "TrialSpec"]

_ADVERSARY_FIELDS = ("count", "placement", "colluding", "model")


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
    seed: int = 0
    repetitions: int = Field(1, ge=1)
    game: GameConfig = Field(default_factory=GameConfig)
    agents: AgentSettings = Field(default_factory=AgentSettings)
    factors: Factors
    model_settings: dict[str, ModelSettings] = Field(default_factory=dict)
    #: a cost limit for the whole run (USD); per-model limits are max_cost_usd in model_settings
    budget_usd: float | None = Field(None, ge=0)
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
        lists: list[list[Any]] = [
            f.models,
            f.conditions,
            f.topologies,
            f.disclosures,
            f.adversaries,
        ]
        return math.prod(len(x) for x in lists)

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
        for models, cond, topo, disc, adv in itertools.product(
            f.models, f.conditions, f.topologies, f.disclosures, f.adversaries
        ):
            if cond.name not in games:
                games[cond.name] = GameConfig.model_validate(
                    {**self.game.model_dump(), **cond.overrides()}
                )
            game = games[cond.name]
            population = (models,) if isinstance(models, str) else tuple(models)
            for rep in range(self.repetitions if repetitions is None else repetitions):
                content = {
                    "seed": self.seed,
                    "repetition": rep,
                    "condition": cond.name,
                    "game": game.model_dump(mode="json"),
                    "models": list(population),
                    "topology": topo,
                    "disclosure": disc.value,
                    "adversary": adv.model_dump(mode="json"),
                    "agents": self.agents.model_dump(mode="json"),
                }
                digest = hashlib.sha256(
                    json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
                ).hexdigest()
                yield TrialSpec(
                    trial_id=digest[:16],
                    seed=int(digest[16:32], 16) % (2**63),
                    repetition=rep,
                    condition=cond.name,
                    game=game,
                    models=population,
                    topology=topo,
                    disclosure=disc,
                    adversary=adv,
                    agents=self.agents,
                )

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

    def warnings(self) -> list[str]:
        """What is allowed but probably not meant: payoffs that are not a Stag Hunt."""
        out = []
        for cond in self.factors.conditions:
            try:
                g = GameConfig.model_validate({**self.game.model_dump(), **cond.overrides()})
            except ValidationError:
                continue  # check() reports it
            if not g.is_stag_hunt:
                out.append(
                    f"condition {cond.name!r}: payoffs stag {g.stag_payoff:g}, hare "
                    f"{g.hare_payoff:g}, failed stag {g.failed_stag_payoff:g} are not a Stag "
                    "Hunt (it needs stag > hare > failed stag)"
                )
        return out

    def check(self) -> None:
        """Fail early on anything a trial would fail on: topologies, models, adversaries."""
        problems: list[str] = []
        for cond in self.factors.conditions:
            try:
                game = GameConfig.model_validate({**self.game.model_dump(), **cond.overrides()})
            except ValidationError as exc:
                problems.append(f"condition {cond.name!r}: {_first_error(exc)}")
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


def _duplicates(f: Factors) -> list[str]:
    """Factor entries given twice: each would give the same trials (the same ids) twice."""
    out = []
    lists: list[tuple[str, list[tuple[Any, str]]]] = [
        ("models", [(e if isinstance(e, str) else tuple(e), repr(e)) for e in f.models]),
        ("topologies", [(t, repr(t)) for t in f.topologies]),
        ("disclosures", [(d.value, repr(d.value)) for d in f.disclosures]),
        (
            "adversaries",
            [
                (json.dumps(a.model_dump(mode="json"), sort_keys=True), repr(a.label))
                for a in f.adversaries
            ],
        ),
    ]
    for name, entries in lists:
        seen: set[Any] = set()
        for key, shown in entries:
            if key in seen:
                out.append(f"factors.{name} lists {shown} twice: remove the repeat")
            seen.add(key)
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


def parse_spec(text: str, source: str = "<string>") -> ExperimentSpec:
    """Parse and validate spec text; every problem becomes a ``SpecError``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{source} is not valid TOML: {exc}") from exc
    try:
        spec = ExperimentSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_format_validation(exc, source)) from exc
    spec.check()
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
    return parse_spec(text, str(p)), text


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
    return (t for t in trials if int(t.trial_id, 16) % n == i)
