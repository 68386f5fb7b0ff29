from __future__ import annotations

import random
from pathlib import Path

import pytest

from stagbench.agents.base import AgentView
from stagbench.games import GameConfig

ROOT = Path(__file__).resolve().parent.parent


def make_view(
    seat: int = 0,
    round_: int = 1,
    history: tuple = (),
    config: GameConfig | None = None,
    phase: int | None = None,
) -> AgentView:
    return AgentView(
        seat=seat,
        config=config or GameConfig(),
        round=round_,
        phase=phase,
        topology=None,
        history=history,
    )


@pytest.fixture
def rng() -> random.Random:
    return random.Random(1234)
