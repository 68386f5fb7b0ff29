"""The adversary kinds a spec can name, each with every fact about it in one record."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from stagbench.errors import StrategyError
from stagbench.registry import Registry

if TYPE_CHECKING:
    from stagbench.adversaries.group import GroupPlan
    from stagbench.agents.base import Agent, AgentView, Decision, Utterance

#: what wraps a scripted adversary when the spec names no model for it
SCRIPTED_INNER = "scripted/always-stag"


@dataclass(frozen=True)
class AdversaryKind:
    """``factory(inner=, seat=, rng=, group=, **params)`` wraps the seat's inner agent.

    ``model_backed``: its inner agent is an LLM it instructs (it needs a model string, by
    default the trial's first model); otherwise it wraps ``scripted/always-stag`` unless
    the spec names a model.

    ``payload``: the parameter holding what it says to the others, which a spec's
    ``payloads`` factor sets (matched sets differing only in it); None: it takes none.
    """

    name: str
    factory: Callable[..., Agent]
    description: str
    model_backed: bool = False
    payload: str | None = None

    @property
    def params(self) -> tuple[str, ...]:
        """The parameters a spec may give it, from the factory's own fields."""
        import inspect

        skip = {"inner", "seat", "rng", "group"}
        names = inspect.signature(self.factory).parameters
        return tuple(n for n in names if n not in skip and not n.startswith("_"))


# The built-in kinds register when ``stagbench.adversaries`` is imported (it imports them).
ADVERSARIES: Registry[AdversaryKind] = Registry("adversary", StrategyError)

W = TypeVar("W", bound=Callable[..., Any])


def adversary(
    name: str, description: str, *, model_backed: bool = False, payload: str | None = None
) -> Callable[[W], W]:
    """Register a wrapper class (or factory) as the adversary kind ``name``; ``payload``
    names the parameter holding what it says (see ``AdversaryKind``)."""

    def register(factory: W) -> W:
        kind = AdversaryKind(name, factory, description, model_backed, payload)
        ADVERSARIES.register(name, kind)
        return factory

    return register


def wrap_adversary(
    kind: str,
    params: dict[str, Any],
    inner: Agent,
    seat: int,
    rng: random.Random,
    group: GroupPlan | None = None,
) -> Agent:
    """Wrap ``inner`` in the adversary ``kind`` with the spec's ``params``."""
    entry = ADVERSARIES.get(kind)
    label = f"{kind}({', '.join(f'{k}={v!r}' for k, v in params.items())})"
    seated = sorted(set(params) & _SEATED)
    if seated:  # (a traceback of keyword clashes before)
        raise StrategyError(
            f"bad parameters for adversary {label!r}: {', '.join(seated)} is set by the seat, "
            "not the spec (the model inside an adversary seat is its 'model' field)"
        )
    return ADVERSARIES.invoke(
        label, entry.factory, inner=inner, seat=seat, rng=rng, group=group, **params
    )


#: what the seating gives every adversary factory, which a spec's parameters cannot name
_SEATED = {"inner", "seat", "rng", "group"}


def inner_model(kind: str, trial_models: tuple[str, ...], named: str | None) -> str:
    """The model inside an adversary seat: the spec's choice, else the kind's default."""
    if named:
        return named
    if kind != "none" and ADVERSARIES.get(kind).model_backed:
        return trial_models[0]
    return SCRIPTED_INNER


def check_adversary(kind: str, params: dict[str, Any], model: str | None = None) -> None:
    """Raise for a kind or parameters the wrapper would reject, before anything runs."""
    if kind == "none":
        return
    entry = ADVERSARIES.get(kind)
    if entry.model_backed and model is not None and model.startswith("scripted/"):
        raise StrategyError(f"adversary {kind!r} instructs an LLM; it cannot run inside {model!r}")
    wrap_adversary(kind, params, _Placeholder(), 0, random.Random(0))


class _Placeholder:
    """Stands in for the inner agent while an adversary's parameters are checked."""

    async def speak(self, view: AgentView) -> Utterance:  # pragma: no cover - never played
        raise NotImplementedError

    async def act(self, view: AgentView) -> Decision:  # pragma: no cover - never played
        raise NotImplementedError

    def add_brief(self, text: str) -> None:
        pass

    def add_round_brief(self, brief: Callable[[AgentView], str | None]) -> None:
        pass
