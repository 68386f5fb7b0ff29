"""OpenAI and any OpenAI-compatible server (vLLM, llama.cpp, Ollama) through the official
async SDK, with native structured output (``response_format`` json_schema)."""

from __future__ import annotations

from typing import Any

from agents.models.base import ChatMessage, GenerateConfig, ModelAPI, ModelOutput, OutputSchema
from agents.models.providers._http import sdk_error
from stagbench.errors import MissingExtraError, ModelError


class OpenAICompatAPI(ModelAPI):
    """Chat completions against ``base_url`` for ``model``.

    ``structured``: ``json_schema`` (native structured outputs, the default),
    ``json_object_schema`` (llama.cpp's server: JSON mode with a schema grammar),
    ``json_object`` (JSON mode; the schema is described in the prompt), or ``none``.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | list[str] | None,
        api_key: str | None,
        structured: str = "json_schema",
        token_param: str = "max_tokens",
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        try:
            import openai
        except ImportError as exc:  # pragma: no cover - openai is a core dependency
            raise MissingExtraError("openai", "openai", "OpenAI models") from exc
        self.model = model
        urls = [base_url] if isinstance(base_url, str) or base_url is None else list(base_url)
        if not urls:
            raise ModelError(f"{model}: an empty list of base URLs")
        self.base_url = None if urls == [None] else "|".join(str(u) for u in urls)
        self.secret = api_key
        self.structured = structured
        self.token_param = token_param
        self.extra_body = extra_body or {}
        # Retries belong to the Model wrapper: the SDK must not retry on its own.
        self.clients = [
            openai.AsyncOpenAI(api_key=api_key or "EMPTY", base_url=u, max_retries=0) for u in urls
        ]
        self.in_flight = [0] * len(self.clients)
        self.sent = [0] * len(self.clients)

    def _response_format(self, schema: OutputSchema | None) -> dict[str, Any] | None:
        if schema is None or self.structured == "none":
            return None
        if self.structured == "json_object":
            return {"type": "json_object"}
        if self.structured == "json_object_schema":
            return {"type": "json_object", "schema": schema.json_schema}
        return {
            "type": "json_schema",
            "json_schema": {"name": schema.name, "schema": schema.json_schema, "strict": True},
        }

    async def generate(
        self,
        messages: list[ChatMessage],
        config: GenerateConfig,
        schema: OutputSchema | None = None,
    ) -> ModelOutput:
        import openai

        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": [m.model_dump() for m in messages],
            self.token_param: config.max_tokens,
            "timeout": config.timeout_s,
            **config.sampling(),
        }
        fmt = self._response_format(schema)
        if fmt is not None:
            kwargs["response_format"] = fmt
        if self.extra_body:
            kwargs["extra_body"] = self.extra_body
        # Several endpoints: the least busy one, ties to the one that has had the fewest.
        i = min(range(len(self.clients)), key=lambda k: (self.in_flight[k], self.sent[k]))
        self.in_flight[i] += 1
        self.sent[i] += 1
        try:
            resp = await self.clients[i].chat.completions.create(**kwargs)
        except (openai.APIError, ValueError) as exc:
            raise sdk_error(self.model, exc, openai) from exc
        finally:
            self.in_flight[i] -= 1
        if not getattr(resp, "choices", None):
            raise ModelError(f"{self.model}: response has no choices", retryable=True)
        choice = resp.choices[0]
        text = choice.message.content or getattr(choice.message, "refusal", None) or ""
        usage = resp.usage
        return ModelOutput(
            text=text,
            input_tokens=usage.prompt_tokens if usage else 0,
            output_tokens=usage.completion_tokens if usage else 0,
            model=resp.model or self.model,
            finish_reason=choice.finish_reason,
        )

    async def aclose(self) -> None:
        for c in self.clients:
            await c.close()
