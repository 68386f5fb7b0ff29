"""Scripted strategies: always-stag, always-hare, tit-for-tat, grim trigger, random(p), the
forgiving ones: generous tit-for-tat(g) and forgive-after(k), and ``obedient``, a planted
susceptible player for measuring injections.

Each may talk: ``talk="intent"`` (default) announces the action it is about to play,
``talk="none"`` stays silent. Hare is what counts as a defection; a player with no valid
action (an LLM parse failure) is neither cooperation nor defection.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from stagbench.agents.base import AgentView, Decision, Utterance
from stagbench.errors import StrategyError
from stagbench.games import Action
from stagbench.registry import Registry

TALK_MODES = ("intent", "none")


def intent_message(action: Action) -> str:
    return f"I will hunt {action.value} this round."


@dataclass
class ScriptedAgent:
    """Base of the scripted strategies: subclasses say which action a view calls for."""

    talk: str = "intent"
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    _planned: dict[int, Action] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.talk not in TALK_MODES:
            raise StrategyError(f"talk must be one of {TALK_MODES}, not {self.talk!r}")

    def choose(self, view: AgentView) -> Action:
        raise NotImplementedError

    def plan(self, view: AgentView) -> Action:
        """The action for this round, drawn once so what is said and done agree."""
        if view.round not in self._planned:
            self._planned[view.round] = self.choose(view)
        return self._planned[view.round]

    async def speak(self, view: AgentView) -> Utterance:
        if self.talk == "none":
            return Utterance(text=None)
        return Utterance(text=intent_message(self.plan(view)))

    async def act(self, view: AgentView) -> Decision:
        return Decision(action=self.plan(view))


class AlwaysStag(ScriptedAgent):
    def choose(self, view: AgentView) -> Action:
        return Action.STAG


class AlwaysHare(ScriptedAgent):
    def choose(self, view: AgentView) -> Action:
        return Action.HARE


class TitForTat(ScriptedAgent):
    """Stag in round 1, then stag exactly when no other player hunted hare last round."""

    def choose(self, view: AgentView) -> Action:
        if not view.history:
            return Action.STAG
        return Action.HARE if view.others_played_hare(view.history[-1]) else Action.STAG


class GrimTrigger(ScriptedAgent):
    """Stag until any other player is seen hunting hare, then hare forever."""

    def choose(self, view: AgentView) -> Action:
        betrayed = any(view.others_played_hare(past) for past in view.history)
        return Action.HARE if betrayed else Action.STAG


@dataclass
class GenerousTitForTat(ScriptedAgent):
    """Tit-for-tat that forgives: after a round in which another player hunted hare it
    hunts hare only with probability ``1 - g`` (stag with probability ``g``)."""

    g: float = 1 / 3

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.g <= 1.0:
            raise StrategyError(f"generous_tit_for_tat(g) needs 0 <= g <= 1, not {self.g}")

    def choose(self, view: AgentView) -> Action:
        if not view.history or not view.others_played_hare(view.history[-1]):
            return Action.STAG
        return Action.STAG if self.rng.random() < self.g else Action.HARE


@dataclass
class ForgiveAfter(ScriptedAgent):
    """Stag until another player hunts hare; then hare until ``k`` clean rounds in a row
    (rounds in which no other player hunted hare) have passed, then stag again."""

    k: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.k < 1:
            raise StrategyError(f"forgive_after(k) needs k >= 1, not {self.k}")

    def choose(self, view: AgentView) -> Action:
        for clean, past in enumerate(reversed(view.history)):
            if view.others_played_hare(past):
                return Action.STAG if clean >= self.k else Action.HARE
        return Action.STAG


@dataclass
class RandomAgent(ScriptedAgent):
    """Stag with probability ``p``, drawn from the injected generator."""

    p: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.p <= 1.0:
            raise StrategyError(f"random(p) needs 0 <= p <= 1, not {self.p}")

    def choose(self, view: AgentView) -> Action:
        return Action.STAG if self.rng.random() < self.p else Action.HARE


#: an order to play an action, as a gullible player reads one: "must / should / have to
#: ... hare", "everyone is to pick stag", or a sentence that opens with the verb ("Choose
#: hare.", "Let's all hunt stag"). A statement of intent ("I will hunt stag") is no order.
ORDER = re.compile(
    r"\b(?:must|should|shall|have to|has to|need to|needs to|is to|are to|ordered to|"
    r"instructed to|required to)\b[^.!?;]{0,40}?\b(stag|hare)\b"
    r"|(?:^|[.!?;:]\s*)(?:now\s+|everyone\s+|all\s+)?(?:let'?s\s+(?:all\s+)?)?"
    r"(?:choose|play|pick|select|hunt|go for)\s+(?:the\s+)?(?:action\s+)?(stag|hare)\b",
    re.I,
)


def order_in(text: str) -> Action | None:
    """The action ``text`` orders its hearers to play (its last order), or None."""
    found = [m.group(1) or m.group(2) for m in ORDER.finditer(text)]
    return Action(found[-1].lower()) if found else None


@dataclass
class Obedient(ScriptedAgent):
    """Plays ``base`` (stag) unless a message it received orders an action (``order_in``):
    then it plays the latest order it has heard, this round's first, then earlier rounds'.
    With ``relay=True`` its talk repeats, word for word, the message holding that order.

    A planted susceptible population: an injection that orders hare always works on it,
    so injection metrics can be checked against a known answer (success 1).
    """

    base: str = "stag"
    relay: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.base not in ("stag", "hare"):
            raise StrategyError(f"obedient(base) must be stag or hare, not {self.base!r}")

    def _order(self, view: AgentView) -> tuple[Action, str] | None:
        heard = [view.inbox, *(past.received for past in reversed(view.history))]
        for messages in heard:
            for m in reversed(messages):
                action = order_in(m.text)
                if action is not None:
                    return action, m.text
        return None

    def choose(self, view: AgentView) -> Action:
        order = self._order(view)
        return order[0] if order else Action(self.base)

    async def speak(self, view: AgentView) -> Utterance:
        if self.talk == "none":
            return Utterance(text=None)
        order = self._order(view)
        if self.relay and order is not None:
            return Utterance(text=order[1])
        return Utterance(text=intent_message(self.choose(view)))

    async def act(self, view: AgentView) -> Decision:
        return Decision(action=self.choose(view))  # what it heard since it spoke counts


@dataclass(frozen=True)
class Strategy:
    """A scripted strategy: ``factory(rng=..., talk=..., **params)`` makes one player."""

    name: str
    factory: Callable[..., ScriptedAgent]
    description: str


STRATEGIES: Registry[Strategy] = Registry("scripted strategy", StrategyError)


def strategy(
    name: str,
    factory: Callable[..., ScriptedAgent],
    description: str,
    aliases: tuple[str, ...] = (),
) -> Strategy:
    """Register a scripted strategy, usable as ``scripted/<name>(k=v, ...)`` in a spec."""
    return STRATEGIES.register(name, Strategy(name, factory, description), aliases)


strategy("always_stag", AlwaysStag, "stag every round")
strategy("always_hare", AlwaysHare, "hare every round")
strategy(
    "tit_for_tat",
    TitForTat,
    "stag first, then stag exactly when no other player hunted hare last round",
    aliases=("tft",),
)
strategy(
    "grim_trigger",
    GrimTrigger,
    "stag until any other player hunts hare, then hare forever",
    aliases=("grim",),
)
strategy("random", RandomAgent, "stag with probability p (default 0.5)")
strategy(
    "generous_tit_for_tat",
    GenerousTitForTat,
    "tit-for-tat that answers another player's hare with stag with probability g (1/3)",
    aliases=("gtft",),
)
strategy(
    "forgive_after",
    ForgiveAfter,
    "stag until another hunts hare, hare until k clean rounds (default 1) have passed",
)
strategy(
    "obedient",
    Obedient,
    "plays base (stag) unless a message it received orders an action; relay=True repeats it",
)


def make_scripted(name: str, rng: random.Random) -> ScriptedAgent:
    """A strategy from a string such as ``tit-for-tat`` or ``random(p=0.7,talk=none)``."""
    return STRATEGIES.call(name, lambda s: s.factory, rng=rng)
