"""The one async seam every provider implements, and the records of a call."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ChatMessage(BaseModel):
    model_config = ConfigDict(frozen=True)

    role: Literal["system", "user", "assistant"]
    content: str


class GenerateConfig(BaseModel):
    """Generation settings for one call; part of the cache key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    temperature: float | None = 0.7
    max_tokens: int = Field(256, ge=1)
    top_p: float | None = None
    seed: int | None = None
    timeout_s: float = Field(60.0, gt=0)

    def sampling(self, accepted: set[str] | None = None) -> dict[str, Any]:
        """temperature / top_p / seed that are set (and, if given, that the API accepts)."""
        values = {"temperature": self.temperature, "top_p": self.top_p, "seed": self.seed}
        return {
            k: v for k, v in values.items() if v is not None and (accepted is None or k in accepted)
        }


class OutputSchema(BaseModel):
    """A JSON schema the reply must follow; providers enforce it natively where they can."""

    model_config = ConfigDict(frozen=True)

    name: str
    json_schema: dict[str, Any]


class ModelOutput(BaseModel):
    text: str
    input_tokens: int = 0
    output_tokens: int = 0
    model: str = ""
    finish_reason: str | None = None


class ModelCallRecord(BaseModel):
    """One model call as the transcript keeps it: prompt as seen, raw reply, parse, cost."""

    model: str
    purpose: Literal["talk", "act"]
    attempt: int
    messages: list[ChatMessage]
    raw: str | None
    temperature: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    parsed: dict[str, Any] | None = None
    parse_ok: bool = False
    error: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    latency_s: float = 0.0
    cost_usd: float = 0.0
    cached: bool = False


class ModelAPI(ABC):
    """One provider's async API. Cross-cutting concerns (retries, limits, cache, cost) live
    in ``agents.models.model.Model``, never here."""

    #: The provider/model string, e.g. ``openai/gpt-4o-mini``.
    name: str = ""
    #: Base URL that identifies the endpoint in the cache key (None for in-process models).
    base_url: str | None = None
    #: The API key in use, so the wrapper can scrub it from any error text.
    secret: str | None = None

    @abstractmethod
    async def generate(
        self,
        messages: list[ChatMessage],
        config: GenerateConfig,
        schema: OutputSchema | None = None,
    ) -> ModelOutput: ...

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections, subprocesses or engines."""
