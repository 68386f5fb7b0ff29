"""One shared ``Model`` per model string for a whole run, so limits and caches are global."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from stagbench.agents.models.cache import ResponseCache
from stagbench.agents.models.model import CostLimit, Model, RunBudget, Usage
from stagbench.agents.models.registry import create_api, price_for, resolve
from stagbench.agents.models.settings import ModelSettings


def settings_for(model: str, table: dict[str, ModelSettings]) -> ModelSettings:
    """Settings for ``model``: the provider's table, then the model's own laid over it."""
    provider = model.split("/", 1)[0]
    merged = ModelSettings()
    for key in (provider, model):
        if key in table:
            merged = merged.merged(table[key])
    return merged


class ModelPool:
    def __init__(
        self,
        settings: dict[str, ModelSettings] | None = None,
        cache_dir: str | Path | None = None,
        budget_usd: float | None = None,
        share: int = 1,
        index: int = 0,
        spent_before_usd: float = 0.0,
        limit_usd: float | None = None,
        spent_before_by_model: Mapping[str, float] | None = None,
        model_limits_usd: Mapping[str, float] | None = None,
    ) -> None:
        """``budget_usd``: the run's (the spec's); ``spent_before_usd``: what the run had
        spent before this process started (``RunStore.spent_before_usd``), which it counts
        as spent; ``share`` processes (``index`` being this one) split every limit and what
        the budget has left; ``limit_usd``: this process's budget, given (a restarted Ray
        task's rest). ``spent_before_by_model`` and ``model_limits_usd``: the same for each
        model's ``max_cost_usd`` (``RunStore.spent_before_by_model``)."""
        self.settings = settings or {}
        self.spent_before_by_model = dict(spent_before_by_model or {})
        self.model_limits_usd = dict(model_limits_usd or {})
        self.share = share
        self.index = index  # which of the ``share`` processes this is (its limits' share)
        # what the run may still spend, split over the processes that share it
        left = None if budget_usd is None else max(0.0, budget_usd - spent_before_usd) / share
        self.budget = RunBudget(
            limit_usd=left if limit_usd is None else limit_usd,
            run_usd=budget_usd,
            before_usd=spent_before_usd,
            share=share,
        )
        self.cache = ResponseCache(cache_dir) if cache_dir is not None else None
        self.models: dict[str, Model] = {}

    def get(self, model: str) -> Model:
        if model not in self.models:
            info, _ = resolve(model)
            whole = settings_for(model, self.settings)
            s = whole.share(self.share, self.index)
            secrets = [os.environ.get(env, "") for env in (info.key_env, s.api_key_env) if env]
            self.models[model] = Model(
                api=create_api(model, s),
                settings=s,
                cache=self.cache,
                price=price_for(model, s),
                secrets=[x for x in secrets if x],
                default_concurrency=info.concurrency(self.share),
                run_budget=self.budget,
                cost_limit=self._cost_limit(model, whole.max_cost_usd),
            )
        return self.models[model]

    def _cost_limit(self, model: str, cap: float | None) -> CostLimit | None:
        """The model's ``max_cost_usd`` for this process: its share of what the run's
        earlier invocations left of it (or the share it is given)."""
        if cap is None:
            return None
        before = self.spent_before_by_model.get(model, 0.0)
        given = self.model_limits_usd.get(model)
        left = max(0.0, cap - before) / self.share
        return CostLimit(
            limit_usd=left if given is None else given,
            model_usd=cap,
            before_usd=before,
            share=self.share,
        )

    def spent_by_model(self) -> dict[str, float]:
        """What this process has spent on each model it called (cached replies cost 0)."""
        return {name: m.usage.cost_usd for name, m in self.models.items() if m.usage.cost_usd}

    def secrets(self) -> list[str]:
        """Every key the pool's models use, to scrub from whatever a run writes."""
        return sorted({s for m in self.models.values() for s in m.secrets if s})

    def usage(self) -> dict[str, Usage]:
        return {name: m.usage for name, m in self.models.items()}

    async def aclose(self) -> None:
        for m in self.models.values():
            await m.aclose()
