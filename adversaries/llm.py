"""LLM-driven adversaries: a deceiver whose model is told, in secret, to promise stag and
hunt hare. By default its action is enforced (hare) so the arm is controlled; with
``enforce_defect=False`` the model chooses and the transcript shows whether it followed
its brief."""

from __future__ import annotations

import random
from typing import Any

from agents.base import Agent
from agents.llm import LLMAgent
from agents.models.model import Model
from agents.settings import AgentSettings
from stagbench.errors import StrategyError

PARAMS = {"deceiver": {"enforce_defect"}}


def check_llm_adversary(kind: str, params: dict[str, Any]) -> None:
    allowed = PARAMS.get(kind)
    if allowed is None:
        raise StrategyError(f"unknown LLM adversary {kind!r}")
    unknown = set(params) - allowed
    if unknown:
        raise StrategyError(
            f"bad parameters for {kind!r}: {sorted(unknown)}; known: {sorted(allowed)}"
        )


def build_llm_adversary(
    kind: str,
    params: dict[str, Any],
    model: Model,
    seat: int,
    settings: AgentSettings,
    rng: random.Random,
) -> Agent:
    check_llm_adversary(kind, params)
    return LLMAgent(
        model=model,
        seat=seat,
        settings=settings,
        seed=rng.randrange(2**31),
        deceiver=True,
        enforce_defect=bool(params.get("enforce_defect", True)),
    )
