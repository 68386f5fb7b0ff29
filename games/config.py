"""Game parameters in one frozen record."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class GameConfig(BaseModel):
    """Everything that defines one repeated Stag Hunt.

    Stag hunters earn ``stag_payoff`` when at least ``threshold`` players hunt stag
    (``None`` means all of them: unanimity), else ``failed_stag_payoff``. Hare pays
    ``hare_payoff`` whatever the others do. A player with no valid action (its reply
    could not be parsed) earns ``invalid_payoff`` and does not count as a stag hunter.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_players: int = Field(4, ge=2)
    rounds: int = Field(5, ge=1)
    stag_payoff: float = 10.0
    hare_payoff: float = 3.0
    failed_stag_payoff: float = 0.0
    invalid_payoff: float = 0.0
    threshold: int | None = Field(None, ge=1)
    talk_phases: int = Field(1, ge=0)
    horizon_disclosed: bool = True

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
