"""LLM-driven adversaries: a deceiver wraps an LLM agent and briefs it, in secret, to
promise stag and hunt hare. By default its hare is enforced, so the arm is controlled;
with ``enforce_defect=False`` the model chooses and the transcript shows whether it
followed its brief.

When it betrays: in every round by default; ``after=k`` builds trust for k rounds first,
``p`` betrays in each later round with that chance. Deceivers of one colluding group
(``colluding=True``) draw these rounds from their shared ``GroupPlan``, so they betray
together; each is told its partners and the plan, and to vouch for them. Under
``enforce_defect`` the plan is enforced as the scripted colluders' is: hare in the
planned rounds, and a message that does not name the partners gets their vouching
appended (the model's own reply stays in its recorded call). When the players are not
told the horizon, neither is the deceiver: its brief gives the plan's rule, not the
rounds up to the end (``Deceiver._brief_plan``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from stagbench.adversaries.registry import adversary
from stagbench.adversaries.wrappers import BaseWrapper
from stagbench.agents.base import AgentView, Briefable, Decision, Utterance
from stagbench.agents.prompts import (
    DECEIVER_BRIEF,
    deceiver_open_plan_brief,
    deceiver_plan_brief,
    deceiver_round_brief,
)
from stagbench.errors import StrategyError
from stagbench.games import Action, player_label


def _names(text: str, label: str) -> bool:
    """Whether ``text`` names the player ``label`` as a whole word: not inside ``P10``."""
    return re.search(rf"(?<![0-9A-Za-z_]){re.escape(label)}(?![0-9A-Za-z_])", text) is not None


@adversary(
    "deceiver",
    "an LLM told in secret to promise stag and hunt hare (enforce_defect=True by default); "
    "after=k rounds of trust first, p = chance to betray per round; colluding groups share "
    "the plan and vouch for each other",
    model_backed=True,
)
@dataclass
class Deceiver(BaseWrapper):
    enforce_defect: bool = True
    p: float = 1.0
    after: int = 0
    _planned: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.inner, Briefable):
            raise StrategyError(
                "a deceiver instructs an LLM agent; give it an LLM model (adversary model=...)"
            )
        if not 0.0 <= self.p <= 1.0:
            raise StrategyError(f"deceiver(p) needs 0 <= p <= 1, not {self.p}")
        if self.after < 0:
            raise StrategyError(f"deceiver(after) needs after >= 0, not {self.after}")
        self.inner.add_brief(DECEIVER_BRIEF)

    @property
    def partners(self) -> list[int]:
        """The other members of its colluding group (none when it acts alone)."""
        if self.group is None:
            return []
        return [s for s in self.group.members if s != self.seat]

    def betrays_in(self, round_: int) -> bool:
        """Whether the plan says hare in ``round_``: the group's coin in a colluding group."""
        return round_ > self.after and (self.p >= 1.0 or self.draw(round_) < self.p)

    def betrays(self, view: AgentView) -> bool:
        return self.enforce_defect and self.betrays_in(view.round)

    def _brief_plan(self, view: AgentView) -> None:
        """Before its first call, tell the model the plan when there is more to it than
        "hare in every round" (the default brief says that much).

        The plan is drawn here for every round of the game, as it always was. When the
        players know the horizon, the brief lists the rounds it betrays in. When they do
        not, listing them would tell the horizon (or that the game ends before its
        betrayal is due), so the brief states the plan's rule without naming its end:
        ``after`` rounds of trust, then hare; a plan drawn round by round (``0 < p < 1``)
        is told one round at a time, in that round's requests."""
        if self._planned:
            return
        self._planned = True
        assert isinstance(self.inner, Briefable)
        g = view.config
        rounds = [r for r in range(1, g.rounds + 1) if self.betrays_in(r)]
        if g.horizon_disclosed:
            if self.partners or len(rounds) != g.rounds:
                self.inner.add_brief(deceiver_plan_brief(self.partners, rounds, g.rounds))
            return
        if self.partners or self.after > 0 or self.p < 1.0:
            self.inner.add_brief(deceiver_open_plan_brief(self.partners, self.after, self.p))
        if 0.0 < self.p < 1.0:
            self.inner.add_round_brief(self._round_plan)

    def _round_plan(self, view: AgentView) -> str:
        """This round's part of a plan drawn round by round (hidden horizon only)."""
        return deceiver_round_brief(view.round, self.betrays_in(view.round), bool(self.partners))

    def vouch(self, text: str) -> str:
        """``text`` with the scripted colluders' vouching appended, unless it names every
        partner already, each by its whole label (``P10`` does not name ``P1``)."""
        mates = [player_label(s) for s in self.partners]
        if not mates or all(_names(text, m) for m in mates):
            return text
        return f"{text} {' and '.join(mates)} will hunt stag too, you can trust us."

    async def speak(self, view: AgentView) -> Utterance:
        self._brief_plan(view)
        said = await self.inner.speak(view)  # the briefed model does its own lying
        if self.enforce_defect and said.text and said.text.strip():
            said.text = self.vouch(said.text.strip())
        return said

    async def act(self, view: AgentView) -> Decision:
        self._brief_plan(view)
        if self.betrays(view):
            return Decision(action=Action.HARE, reasoning="(deceiver: defection enforced)")
        return await self.inner.act(view)
