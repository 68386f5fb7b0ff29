"""LLM-driven adversaries: a deceiver wraps an LLM agent and briefs it, in secret, to
promise stag and hunt hare. By default its hare is enforced, so the arm is controlled;
with ``enforce_defect=False`` the model chooses and the transcript shows whether it
followed its brief."""

from __future__ import annotations

from dataclasses import dataclass

from stagbench.adversaries.registry import adversary
from stagbench.adversaries.wrappers import Wrapper
from stagbench.agents.base import AgentView, Briefable, Decision, Utterance
from stagbench.agents.prompts import DECEIVER_BRIEF
from stagbench.errors import StrategyError
from stagbench.games import Action


@adversary(
    "deceiver",
    "an LLM told in secret to promise stag and hunt hare (enforce_defect=True by default)",
    model_backed=True,
)
@dataclass
class Deceiver(Wrapper):
    enforce_defect: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.inner, Briefable):
            raise StrategyError(
                "a deceiver instructs an LLM agent; give it an LLM model (adversary model=...)"
            )
        self.inner.add_brief(DECEIVER_BRIEF)

    def betrays(self, view: AgentView) -> bool:
        return self.enforce_defect

    async def speak(self, view: AgentView) -> Utterance:
        return await self.inner.speak(view)  # the briefed model does its own lying

    async def act(self, view: AgentView) -> Decision:
        if self.enforce_defect:
            return Decision(action=Action.HARE, reasoning="(deceiver: defection enforced)")
        return await self.inner.act(view)
