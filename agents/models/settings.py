"""Per-model settings from the spec's ``[model_settings."<model or provider>"]`` tables."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from stagbench.agents.models.safety import has_credentials
from stagbench.records.numbers import Float, Int


class ModelSettings(BaseModel):
    """Endpoint, limits and prices for one model (or every model of a provider prefix)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: one endpoint, or several serving the same model (load goes to the least busy)
    base_url: str | list[str] | None = None
    api_key_env: str | None = None
    max_concurrency: Int | None = Field(None, ge=1)
    requests_per_minute: Float | None = Field(None, gt=0)
    tokens_per_minute: Float | None = Field(None, gt=0)
    max_retries: Int | None = Field(None, ge=0)
    #: first retry waits about this long (doubling after), unless the server says Retry-After
    retry_backoff_s: Float | None = Field(None, ge=0)
    input_per_mtok: Float | None = Field(None, ge=0)
    output_per_mtok: Float | None = Field(None, ge=0)
    max_cost_usd: Float | None = Field(None, ge=0)
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("base_url")
    @classmethod
    def _no_credentials(cls, v: str | list[str] | None) -> str | list[str] | None:
        urls = [v] if isinstance(v, str) else v or []
        if any(has_credentials(u) for u in urls):
            # The URL itself is never repeated: it holds a password.
            raise ValueError(
                "a base_url holds credentials (user:password@), which stagbench does not send "
                "and never writes down; put the key in an environment variable named by "
                "api_key_env and give the URL without them"
            )
        return v

    def share(self, k: int, index: int = 0) -> ModelSettings:
        """Process ``index``'s share when ``k`` worker processes (or Ray tasks) run one spec
        together: limits (concurrency, rates, cost) are split so that together they keep
        the whole. Calls in flight are whole: the first ``max_concurrency % k`` processes
        get one more than the others, so the shares add up to the limit exactly; a limit
        below ``k`` cannot be split (``split_problems`` refuses it before a run starts)."""
        if k <= 1:
            return self
        update: dict[str, Any] = {}
        if self.max_concurrency is not None:
            whole, rest = divmod(self.max_concurrency, k)
            update["max_concurrency"] = max(1, whole + (1 if index % k < rest else 0))
        for name in ("requests_per_minute", "tokens_per_minute", "max_cost_usd"):
            value = getattr(self, name)
            if value is not None:
                update[name] = value / k
        return self.model_copy(update=update)

    def merged(self, other: ModelSettings) -> ModelSettings:
        """These settings with every field ``other`` sets laid over them."""
        return self.model_copy(update=other.model_dump(exclude_unset=True))
