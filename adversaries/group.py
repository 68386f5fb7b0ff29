"""What the members of a colluding group share: one roster and one coin per round, so they
betray in the same rounds and can vouch for each other."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class GroupPlan:
    """Shared decisions of a colluding group: one coin per round, one roster."""

    members: tuple[int, ...]
    rng: random.Random
    _coins: dict[int, float] = field(default_factory=dict)

    def coin(self, round_: int) -> float:
        if round_ not in self._coins:
            self._coins[round_] = self.rng.random()
        return self._coins[round_]
