"""Anthropic through the official async SDK, never a compatibility endpoint.

Structured output is native: forced tool use by default (the reply is the tool's input,
validated by the API against the schema), or ``options.structured = "json_schema"`` for
the Messages API's own output format where the SDK has it. Sampling parameters are sent
only where the installed SDK still accepts them (recent SDKs dropped ``temperature``).
"""

from __future__ import annotations

import inspect
import json
from typing import Any

from stagbench.agents.models.base import (
    ChatMessage,
    GenerateConfig,
    ModelAPI,
    ModelOutput,
    OutputSchema,
)
from stagbench.agents.models.providers._http import sdk_error
from stagbench.agents.models.safety import check_base_url


class AnthropicAPI(ModelAPI):
    def __init__(
        self, model: str, *, base_url: str | None, api_key: str | None, structured: str = "tool"
    ) -> None:
        import anthropic

        check_base_url(base_url, model, "ANTHROPIC_API_KEY (or api_key_env)")
        self.model = model
        self.base_url = base_url
        self.secret = api_key
        self.client = anthropic.AsyncAnthropic(
            api_key=api_key or "missing", base_url=base_url, max_retries=0
        )
        self.accepted = set(inspect.signature(self.client.messages.create).parameters)
        if structured not in ("tool", "json_schema"):
            raise ValueError(
                f"anthropic structured must be tool or json_schema, not {structured!r}"
            )
        if structured == "json_schema" and "output_config" not in self.accepted:
            structured = "tool"  # this SDK predates native output formats
        self.structured = structured

    async def generate(
        self,
        messages: list[ChatMessage],
        config: GenerateConfig,
        schema: OutputSchema | None = None,
    ) -> ModelOutput:
        import anthropic

        system = "\n\n".join(m.content for m in messages if m.role == "system")
        chat = [m.model_dump() for m in messages if m.role != "system"]
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": chat,
            "max_tokens": config.max_tokens,
            "timeout": config.timeout_s,
            # Anthropic has no seed; recent SDKs dropped temperature and top_p too.
            **config.sampling(self.accepted - {"seed"}),
        }
        if system:
            kwargs["system"] = system
        if schema is not None and self.structured == "json_schema":
            kwargs["output_config"] = {
                "format": {"type": "json_schema", "schema": schema.json_schema}
            }
        elif schema is not None:
            kwargs["tools"] = [
                {
                    "name": schema.name,
                    "description": f"Submit your {schema.name} reply.",
                    "input_schema": schema.json_schema,
                }
            ]
            kwargs["tool_choice"] = {"type": "tool", "name": schema.name}
        try:
            resp = await self.client.messages.create(**kwargs)
        except (anthropic.APIError, ValueError, RecursionError) as exc:
            raise sdk_error(self.model, exc, anthropic, [self.secret]) from exc
        # The SDK builds its reply without validating it: a 200 body of another shape
        # (no content, null usage, NaN counts) fails here, a malformed response.
        try:
            text = ""
            for block in resp.content:
                if block.type == "tool_use":
                    text = json.dumps(block.input)
                    break
                if block.type == "text":
                    text += block.text
            return ModelOutput(
                text=text,
                input_tokens=resp.usage.input_tokens,
                output_tokens=resp.usage.output_tokens,
                model=resp.model,
                finish_reason=resp.stop_reason,
                request_id=getattr(resp, "id", None) or None,
            )
        except (TypeError, AttributeError, KeyError, ValueError, RecursionError) as exc:
            raise sdk_error(self.model, exc, anthropic, [self.secret]) from None

    async def aclose(self) -> None:
        await self.client.close()
