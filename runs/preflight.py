"""Checks that run before anything is written or spent (``validate`` and the start of
``run``): everything a trial would fail on at run time, found from the spec alone.

- ``check_models``: each model string with its settings, through its provider's own check
  (an unknown mock, a replay source or model file that is not there, a bad option, a base
  URL with credentials), without building an engine or opening a connection.
- ``check_cells``: the seats of one trial of every cell of the design, built as a run
  builds them but on a model that is never called, so an agent or adversary that refuses
  its settings (an unknown prompt variant, a wrapper around the wrong kind of agent) is
  found now rather than in every trial.
- ``environment_problems``: what this machine lacks (a package, an API key).
- ``settings_warnings``: what this machine makes of the settings that is probably not
  meant (an option that only starts a server, beside VLLM_BASE_URL's running one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from stagbench.agents.models.base import (
    ChatMessage,
    GenerateConfig,
    ModelAPI,
    ModelOutput,
    OutputSchema,
)
from stagbench.agents.models.model import Model
from stagbench.agents.models.pool import ModelPool, settings_for
from stagbench.agents.models.registry import check_model, model_warnings, price_for, resolve
from stagbench.agents.models.registry import environment_problems as model_environment
from stagbench.errors import ModelError, StagbenchError
from stagbench.runs.compose import AgentFactory, is_scripted, seat_agents

if TYPE_CHECKING:
    from stagbench.agents.models.settings import ModelSettings
    from stagbench.records import TrialSpec


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def check_models(models: Iterable[str], table: dict[str, ModelSettings]) -> list[str]:
    """Every model string that building or calling would refuse, with why."""
    problems = []
    for m in models:
        if is_scripted(m):
            continue
        try:
            check_model(m, settings_for(m, table))
        except StagbenchError as exc:
            problems.append(str(exc))
    return _unique(problems)


def _each_model(
    models: Iterable[str],
    table: dict[str, ModelSettings],
    ask: Callable[[str, ModelSettings], list[str]],
) -> list[str]:
    """What ``ask`` says of each model that is not scripted, with its settings, once each;
    a model of an unknown provider is skipped (the spec check says so)."""
    out: list[str] = []
    for m in models:
        if is_scripted(m):
            continue
        try:
            out += ask(m, settings_for(m, table))
        except StagbenchError:
            continue
    return _unique(out)


def environment_problems(models: Iterable[str], table: dict[str, ModelSettings]) -> list[str]:
    """What this machine lacks to run these models (packages, keys)."""
    return _each_model(models, table, model_environment)


def split_problems(models: Iterable[str], table: dict[str, ModelSettings], k: int) -> list[str]:
    """Why these models' limits cannot be split over ``k`` worker processes or Ray tasks:
    each needs at least one call in flight of every model, so a ``max_concurrency`` below
    ``k`` would be exceeded (``ModelSettings.share``). Empty when they can."""

    def unsplit(m: str, s: ModelSettings) -> list[str]:
        limit = s.max_concurrency
        if limit is None or limit >= k:
            return []
        return [
            f"{m}: max_concurrency = {limit} cannot be split over {k} processes (each "
            f"needs a call in flight of its own, {k} in all): run at most {limit}, or raise "
            "max_concurrency if the model can take more"
        ]

    return _each_model(models, table, unsplit)


def price_problems(models: Iterable[str], table: dict[str, ModelSettings]) -> list[str]:
    """A price given by half: ``input_per_mtok`` without ``output_per_mtok`` or the other
    way round (the provider's table and the model's laid over it, ``settings_for``). A
    price is used only whole, so half of one would be ignored silently (the provider's
    list price used instead, or none: calls then cost $0 and no budget stops them); the
    spec check refuses it."""
    out = []
    for m in models:
        if is_scripted(m):
            continue
        s = settings_for(m, table)
        halves = {"input_per_mtok": s.input_per_mtok, "output_per_mtok": s.output_per_mtok}
        given = [k for k, v in halves.items() if v is not None]
        if len(given) == 1:
            missing = next(k for k in halves if k not in given)
            out.append(
                f"model_settings for {m}: {given[0]} is set but {missing} is not; a price "
                f"needs both (set {missing} = 0 for a free half), or neither for the "
                "provider's list price"
            )
    return _unique(out)


def price_warnings(
    models: Iterable[str], table: dict[str, ModelSettings], budget_usd: float | None
) -> list[str]:
    """Models a cost limit (``budget_usd``, or the model's ``max_cost_usd``) cannot see: no
    price known for them (neither the spec's nor the provider's), so their calls count $0
    and the limit never stops them. A provider whose calls are free (mock, local, vLLM,
    replay: ``Provider.free``) has a price, $0, and is not listed."""
    out = []
    for m in models:
        if is_scripted(m):
            continue
        s = settings_for(m, table)
        limits = ["budget_usd"] if budget_usd is not None else []
        if s.max_cost_usd is not None:
            limits.append(f"its max_cost_usd ({s.max_cost_usd:g})")
        if not limits or (s.input_per_mtok is None) != (s.output_per_mtok is None):
            continue  # no limit, or half a price (price_problems refuses it)
        try:
            resolve(m)
        except StagbenchError:
            continue  # an unknown provider: the spec check says so
        if price_for(m, s) is None:
            out.append(
                f"{' and '.join(limits)} cannot stop {m}: no price is known for it, so its "
                "calls count $0; set input_per_mtok and output_per_mtok in "
                f'[model_settings."{m}"]'
            )
    return _unique(out)


def settings_warnings(models: Iterable[str], table: dict[str, ModelSettings]) -> list[str]:
    """What this machine makes of these models' settings that is probably not meant (an
    option that only starts a server, beside VLLM_BASE_URL's running one)."""
    return _each_model(models, table, model_warnings)


class _NeverCalled(ModelAPI):
    """The model of a seat built only to be checked."""

    name = "preflight"

    async def generate(
        self,
        messages: list[ChatMessage],
        config: GenerateConfig,
        schema: OutputSchema | None = None,
    ) -> ModelOutput:
        raise ModelError("a preflight seat is never played")


class _DryPool(ModelPool):
    """A pool whose models are never called: seats are built, nothing is spent."""

    def __init__(self) -> None:
        super().__init__()
        self._model = Model(api=_NeverCalled())

    def get(self, model: str) -> Model:
        return self._model


def check_cells(cells: Iterable[TrialSpec]) -> list[str]:
    """Build the seats of each given trial (one per cell) and collect what refuses."""
    pool = _DryPool()
    problems = []
    for trial in cells:
        try:
            seat_agents(trial, AgentFactory(trial, pool))
        except StagbenchError as exc:
            problems.append(str(exc))
    return _unique(problems)
