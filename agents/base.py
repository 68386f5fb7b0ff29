"""The async ``Agent`` protocol and the per-player views it is handed.

A view holds only what that player may know: its own seat, the rules, the revealed
actions and payoffs of past rounds, the messages that reached it, and, under explicit
disclosure, whom it can reach and hear. Rendering a view to text is the templates
module's job, never the state's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from stagbench.games import Action, GameConfig
from stagbench.records import ModelCallRecord
from stagbench.topologies import TopologyView


@dataclass(frozen=True)
class Message:
    """One cheap-talk message as delivered: who said it, who heard it."""

    round: int
    phase: int
    sender: int
    receivers: tuple[int, ...]
    text: str


@dataclass(frozen=True)
class PastRound:
    """What a player remembers of a finished round."""

    round: int
    actions: tuple[Action | None, ...]
    payoffs: tuple[float, ...]
    received: tuple[Message, ...]
    said: tuple[str, ...]


@dataclass(frozen=True)
class AgentView:
    """Everything one player may see when asked to talk (``phase`` set) or act (``phase`` None)."""

    seat: int
    config: GameConfig
    round: int
    phase: int | None
    topology: TopologyView | None
    history: tuple[PastRound, ...] = ()
    inbox: tuple[Message, ...] = ()
    said: tuple[str, ...] = ()

    def others_played_hare(self, past: PastRound) -> list[int]:
        return [s for s, a in enumerate(past.actions) if s != self.seat and a is Action.HARE]


@dataclass
class Utterance:
    """A talk reply. ``text`` None or empty means the player stays silent."""

    text: str | None
    calls: list[ModelCallRecord] = field(default_factory=list)
    parse_failed: bool = False
    error: str | None = None


@dataclass
class Decision:
    """An act reply. ``action`` None means no valid action (a recorded parse failure)."""

    action: Action | None
    reasoning: str | None = None
    calls: list[ModelCallRecord] = field(default_factory=list)
    parse_failed: bool = False
    error: str | None = None


@runtime_checkable
class Agent(Protocol):
    """A player. One instance plays one seat of one trial."""

    async def speak(self, view: AgentView) -> Utterance: ...

    async def act(self, view: AgentView) -> Decision: ...


@runtime_checkable
class Briefable(Protocol):
    """An agent that can be given standing instructions of its own, beyond the rules every
    player reads (an LLM agent: they join its system prompt). Wrappers use it to turn an
    agent into something else, e.g. a deceiver, without the agent knowing why."""

    def add_brief(self, text: str) -> None: ...

    def add_round_brief(self, brief: Callable[[AgentView], str | None]) -> None: ...
