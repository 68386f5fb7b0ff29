"""The one async seam every provider implements, and what a call takes and gives."""

from __future__ import annotations

import json
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

    def within_tokens(self, max_tokens: int) -> OutputSchema:
        """This schema with every free-text string's ``maxLength`` lowered (never raised)
        so that a reply filling each string to its limit still closes within
        ``max_tokens``: see ``fit_strings``."""
        fitted = fit_strings(self.json_schema, max_tokens)
        if fitted is self.json_schema:
            return self
        return OutputSchema(name=self.name, json_schema=fitted)


#: the most tokens one character of a reply can take: a token is at least one byte of
#: text, and a character at most four bytes of UTF-8. (An emoji can take several tokens:
#: SmolLM2 spends three on one.)
MAX_TOKENS_PER_CHAR = 4
#: tokens kept beyond the compact JSON for what a grammar may add: a space at each of its
#: optional places, a newline, and the end-of-text token
SLACK_TOKENS = 4


def fit_strings(json_schema: dict[str, Any], max_tokens: int) -> dict[str, Any]:
    """A flat object schema whose free-text strings (``type: string`` without ``enum``)
    share what ``max_tokens`` leaves after the reply's fixed part, as ``maxLength``.

    The fixed part is the reply's JSON with every free string empty and every other value
    at its longest (an ``enum``'s longest member; 20 characters for a number, boolean or
    null), with ``json.dumps``' spaces, plus ``SLACK_TOKENS`` (ASCII: a token a character
    at most). What is left, at ``MAX_TOKENS_PER_CHAR`` tokens a character, is split evenly.
    A constrained reply then closes before the cap whatever characters it writes, as long
    as it writes them as themselves; only a reply spelling characters as ``\\uXXXX``
    escapes (six bytes each) could still be cut, and is then recorded as truncated.
    Returns ``json_schema`` itself when no limit changes (a schema that is not a flat
    object, or a cap that leaves every limit as it is); never a limit below zero."""
    props = json_schema.get("properties")
    if json_schema.get("type") != "object" or not isinstance(props, dict) or not props:
        return json_schema
    skeleton: dict[str, Any] = {}
    free: list[str] = []
    for key, sub in props.items():
        if not isinstance(sub, dict):
            return json_schema
        if "enum" in sub:
            skeleton[key] = max(sub["enum"], key=lambda v: len(json.dumps(v)))
        elif sub.get("type") == "string":
            skeleton[key] = ""
            free.append(key)
        elif sub.get("type") in ("number", "integer", "boolean", "null") or isinstance(
            sub.get("type"), list
        ):
            skeleton[key] = "x" * 18  # a stand-in 20 characters long as JSON
        else:  # nested objects and arrays: no bound worked out here
            return json_schema
    if not free:
        return json_schema
    fixed = len(json.dumps(skeleton)) + SLACK_TOKENS
    share = max(0, (max_tokens - fixed) // (MAX_TOKENS_PER_CHAR * len(free)))
    new_props = dict(props)
    changed = False
    for key in free:
        current = props[key].get("maxLength")
        if current is None or share < current:
            new_props[key] = {**props[key], "maxLength": share}
            changed = True
    return {**json_schema, "properties": new_props} if changed else json_schema


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
