"""Payoffs and state of the repeated game; simultaneous moves are first-class."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from stagbench.errors import GameError
from stagbench.records import GameConfig


class Action(StrEnum):
    STAG = "stag"
    HARE = "hare"


@dataclass(frozen=True)
class RoundResult:
    """The outcome of one simultaneous move. ``None`` marks a player with no valid action."""

    round: int
    actions: tuple[Action | None, ...]
    payoffs: tuple[float, ...]
    stag_count: int
    hunt_succeeded: bool


def payoffs(config: GameConfig, actions: Sequence[Action | None]) -> tuple[float, ...]:
    """Payoff of each player for one joint action."""
    if len(actions) != config.n_players:
        raise GameError(f"expected {config.n_players} actions, got {len(actions)}")
    stags = sum(1 for a in actions if a is Action.STAG)
    success = stags >= config.stag_needed
    out: list[float] = []
    for a in actions:
        if a is Action.STAG:
            out.append(config.stag_payoff if success else config.failed_stag_payoff)
        elif a is Action.HARE:
            out.append(config.hare_payoff)
        elif a is None:
            out.append(config.invalid_payoff)
        else:
            raise GameError(f"not an action: {a!r}")
    return tuple(out)


@dataclass
class GameState:
    """The repeated game so far. ``apply_joint_action`` is the only transition."""

    config: GameConfig
    history: list[RoundResult] = field(default_factory=list)

    @property
    def round(self) -> int:
        """The 1-based number of the round being played (or rounds + 1 when over)."""
        return len(self.history) + 1

    @property
    def is_terminal(self) -> bool:
        return len(self.history) >= self.config.rounds

    def apply_joint_action(self, actions: Sequence[Action | None]) -> RoundResult:
        if self.is_terminal:
            raise GameError("the game is over; no more rounds can be played")
        pay = payoffs(self.config, actions)
        stags = sum(1 for a in actions if a is Action.STAG)
        result = RoundResult(
            round=self.round,
            actions=tuple(actions),
            payoffs=pay,
            stag_count=stags,
            hunt_succeeded=stags >= self.config.stag_needed,
        )
        self.history.append(result)
        return result

    def totals(self) -> tuple[float, ...]:
        n = self.config.n_players
        return tuple(sum(r.payoffs[i] for r in self.history) for i in range(n))
