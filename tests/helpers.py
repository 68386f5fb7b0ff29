"""Shared test helpers: build trials from small inline specs, recording agents."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from agents.base import AgentView, Decision, Utterance
from games import Action
from runs.spec import TrialSpec, parse_spec

BASE = """
name = "t"
seed = 7
[game]
rounds = {rounds}
talk_phases = {phases}
[factors]
models = ["scripted/always-stag"]
topologies = ["{topology}"]
disclosures = ["{disclosure}"]
"""


def trial(
    topology: str = "complete", disclosure: str = "explicit", rounds: int = 2, phases: int = 1
) -> TrialSpec:
    text = BASE.format(topology=topology, disclosure=disclosure, rounds=rounds, phases=phases)
    return parse_spec(text).trials()[0]


@dataclass
class Recorder:
    """Says who it is, plays stag, and keeps every view it was shown."""

    seat: int
    views: list[AgentView] = field(default_factory=list)

    async def speak(self, view: AgentView) -> Utterance:
        self.views.append(view)
        return Utterance(text=f"hello from {self.seat} r{view.round} p{view.phase}")

    async def act(self, view: AgentView) -> Decision:
        self.views.append(view)
        return Decision(action=Action.STAG)


def recorder_builder(store: dict[int, Recorder]):  # type: ignore[no-untyped-def]
    def build(model: str, seat: int, rng: random.Random) -> Recorder:
        store[seat] = Recorder(seat)
        return store[seat]

    return build
