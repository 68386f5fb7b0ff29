"""Turn model strings into agents: ``scripted/<strategy>`` or any registered LLM provider."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from adversaries import GroupPlan, wrap_adversary
from agents.base import Agent
from agents.scripted import AlwaysStag, make_scripted
from agents.settings import AgentSettings
from stagbench.errors import StrategyError

if TYPE_CHECKING:
    from agents.models.pool import ModelPool
    from runs.spec import TrialSpec
    from runs.trial import AgentBuilder

SCRIPTED = "scripted"


def check_model_string(model: str) -> None:
    """Raise a clear error for a model string that could never be built."""
    provider, sep, rest = model.partition("/")
    if not sep or not rest:
        from stagbench.errors import ModelNotFoundError

        raise ModelNotFoundError(
            f"model string {model!r} must look like provider/model, e.g. "
            "scripted/tit-for-tat, local/smollm2-135m or openai/gpt-4o-mini"
        )
    if provider == SCRIPTED:
        make_scripted(rest, random.Random(0))
        return
    from agents.models.registry import resolve

    resolve(model)


def check_adversary(kind: str, params: dict[str, Any]) -> None:
    """Raise for adversary parameters the wrapper would reject."""
    if kind == "none":
        return
    if kind == "deceiver":
        from adversaries.llm import check_llm_adversary

        check_llm_adversary(kind, params)
        return
    wrap_adversary(kind, params, AlwaysStag(), 0, random.Random(0))


class AgentFactory:
    """Builds the agents of one trial; LLM agents share models from the run's pool."""

    def __init__(self, trial: TrialSpec, pool: ModelPool | None = None) -> None:
        self.trial = trial
        self.settings: AgentSettings = trial.agents
        self.pool = pool

    def build(self, model: str, seat: int, rng: random.Random) -> Agent:
        provider, _, rest = model.partition("/")
        if provider == SCRIPTED:
            return make_scripted(rest, rng)
        if self.pool is None:
            raise StrategyError(f"model {model!r} needs a model pool; none was given")
        from agents.llm import LLMAgent

        return LLMAgent(
            model=self.pool.get(model),
            seat=seat,
            settings=self.settings,
            seed=rng.randrange(2**31),
        )

    def build_adversary(
        self,
        trial: TrialSpec,
        seat: int,
        inner_model: str,
        build: AgentBuilder,
        rng: random.Random,
        group: GroupPlan | None,
    ) -> Agent:
        adv = trial.adversary
        if adv.kind == "deceiver":
            from adversaries.llm import build_llm_adversary

            if self.pool is None:
                raise StrategyError(f"adversary {adv.kind!r} needs a model pool; none was given")
            return build_llm_adversary(
                adv.kind, dict(adv.params), self.pool.get(inner_model), seat, self.settings, rng
            )
        return wrap_adversary(
            adv.kind, dict(adv.params), build(inner_model, seat, rng), seat, rng, group
        )
