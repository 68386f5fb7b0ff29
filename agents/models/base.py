"""The one async seam every provider implements, and what a call takes and gives."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stagbench.records import ChatMessage, ModelCallRecord


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
    """A reply and what the provider said about it."""

    text: str
    input_tokens: int = 0
    output_tokens: int = 0
    #: the model version the provider reports (e.g. ``gpt-4o-mini-2024-07-18``)
    model: str = ""
    #: why generation stopped: ``stop``, ``length`` (cut at max_tokens), ``tool_use``, ...
    finish_reason: str | None = None
    system_fingerprint: str | None = None
    request_id: str | None = None


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


__all__ = [
    "ChatMessage",
    "GenerateConfig",
    "ModelAPI",
    "ModelCallRecord",
    "ModelOutput",
    "OutputSchema",
]
