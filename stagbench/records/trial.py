"""What one trial is, as a frozen record: the game, the seats' settings, the adversary arm.

These records are part of every transcript's header, so they live at the bottom of the
house: the engine (``stagbench.games``) plays a ``GameConfig``, the spec
(``stagbench.runs.spec``) expands into ``TrialSpec`` records, and analysis reads them back,
all without importing one another.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from stagbench.records.numbers import Float, Int, not_bool


class Disclosure(StrEnum):
    """``explicit``: each agent is told whom it reaches and hears; ``silent``: same routing,
    nothing said."""

    EXPLICIT = "explicit"
    SILENT = "silent"


class GameConfig(BaseModel):
    """Everything that defines one repeated Stag Hunt.

    Stag hunters earn ``stag_payoff`` when at least ``threshold`` players hunt stag
    (``None`` means all of them: unanimity), else ``failed_stag_payoff``. Hare pays
    ``hare_payoff`` whatever the others do. A player with no valid action (its reply
    could not be parsed) earns ``invalid_payoff`` and does not count as a stag hunter.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_players: Int = Field(4, ge=2)
    rounds: Int = Field(5, ge=1)
    stag_payoff: Float = 10.0
    hare_payoff: Float = 3.0
    failed_stag_payoff: Float = 0.0
    invalid_payoff: Float = 0.0
    threshold: Int | None = Field(None, ge=1)
    talk_phases: Int = Field(1, ge=0)
    horizon_disclosed: bool = True

    @field_validator("stag_payoff", "hare_payoff", "failed_stag_payoff", "invalid_payoff")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError(f"a payoff must be a finite number, not {v}")
        return v

    @model_validator(mode="after")
    def _check(self) -> GameConfig:
        if self.threshold is not None and self.threshold > self.n_players:
            raise ValueError(
                f"threshold {self.threshold} exceeds n_players {self.n_players}: "
                "stag could never succeed"
            )
        return self

    @property
    def stag_needed(self) -> int:
        """How many stag hunters a successful hunt needs."""
        return self.n_players if self.threshold is None else self.threshold

    @property
    def is_stag_hunt(self) -> bool:
        """Whether the payoffs order as a Stag Hunt: stag > hare > failed stag."""
        return self.stag_payoff > self.hare_payoff > self.failed_stag_payoff


class AgentSettings(BaseModel):
    """LLM agent settings from the spec's ``[agents]`` table (scripted agents ignore them)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    temperature: Float | None = 0.7
    max_tokens: Int = Field(256, ge=1)
    top_p: Float | None = None
    timeout_s: Float = Field(60.0, gt=0)
    max_reasks: Int = Field(2, ge=0)
    prompt_variant: str = "default"
    reasoning: bool = True
    defence: Literal["none", "delimit"] = "none"


class AdversarySpec(BaseModel):
    """One adversary arm: a kind with parameters, how many, where, and whose model inside.

    The spec also accepts it as a string (``"soft(p=0.5,count=1,placement=hub)"``); which
    kinds exist is the adversary registry's business, checked when a spec is validated.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str = "none"
    params: dict[str, Any] = Field(default_factory=dict)
    count: Int = Field(1, ge=0)
    placement: str | list[int] = "random"
    colluding: bool = False
    model: str | None = None

    @field_validator("placement", mode="before")
    @classmethod
    def _seats_are_numbers(cls, v: Any) -> Any:
        """A list of seats holds numbers: ``[true]`` is not seat 1."""
        if isinstance(v, list):
            for seat in v:
                not_bool(seat)
        return v

    @model_validator(mode="after")
    def _none_has_no_seats(self) -> AdversarySpec:
        if self.kind == "none":
            object.__setattr__(self, "count", 0)
        return self

    @property
    def label(self) -> str:
        """A short name for tables: ``soft(p=0.5)[1@hub]``."""
        if self.kind == "none" or self.count == 0:
            return "none"
        args = ",".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        where = self.placement if isinstance(self.placement, str) else "seats" + str(self.placement)
        group = ",colluding" if self.colluding else ""
        return f"{self.kind}{f'({args})' if args else ''}[{self.count}@{where}{group}]"


def _is_none(value: object) -> bool:
    return value is None


class PayloadSpec(BaseModel):
    """One level of a spec's ``payloads`` factor: what the adversaries say.

    Trials that differ only in their payload form a matched set: the same seed, so the same
    seats, placement and sampling seeds. The ``control`` level (the first one unless another
    is marked) is what each other level is measured against. ``wants`` is the action the
    payload asks its hearers for; whether they play it is "the instruction followed".
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    text: str
    wants: Literal["stag", "hare"] = "hare"
    control: bool = False


class TrialSpec(BaseModel):
    """One fully determined trial, frozen. Its id and seed are hashes of its content.

    ``payload`` and ``match`` are set only by a spec with a ``payloads`` factor (and left
    out of the JSON otherwise, so other trials' records do not change): the payload level
    this trial plays, and the key its matched set shares.
    """

    model_config = ConfigDict(frozen=True)

    trial_id: str
    seed: Int
    repetition: Int
    condition: str
    game: GameConfig
    models: tuple[str, ...]
    topology: str
    disclosure: Disclosure
    adversary: AdversarySpec
    agents: AgentSettings
    payload: PayloadSpec | None = Field(default=None, exclude_if=_is_none)
    match: str | None = Field(default=None, exclude_if=_is_none)

    @property
    def population(self) -> str:
        return "+".join(self.models)


def same_trial(a: bytes | TrialSpec, b: bytes | TrialSpec) -> bool:
    """Whether two trial records (JSON, or validated) are the same trial once validated: a
    migrated or re-serialised record may differ in layout, not content. A record that does
    not validate is no trial's."""
    try:
        x = a if isinstance(a, TrialSpec) else TrialSpec.model_validate_json(a)
        y = b if isinstance(b, TrialSpec) else TrialSpec.model_validate_json(b)
    except ValidationError:
        return False
    return x == y


def in_shard(trial_id: str, i: int, n: int) -> bool:
    """Whether the trial ``trial_id`` (hex) is in shard ``i`` of ``n`` (``--shard i/n``):
    by its id alone, so the same on every machine and however the spec grows."""
    return int(trial_id, 16) % n == i
