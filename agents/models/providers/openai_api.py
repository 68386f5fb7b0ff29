"""OpenAI and any OpenAI-compatible server (vLLM, llama.cpp, Ollama), with native
structured output (``response_format`` json_schema).

Two clients send the same request body:

- ``sdk``: the official async SDK (the default for ``openai`` and ``openai-api``).
- ``http``: one aiohttp session posting JSON to ``/chat/completions`` (the default for
  ``vllm``). The SDK spends 2-3 ms of CPU per call on request transformation and its
  HTTP stack, which caps one process at a few hundred calls a second; this client spends
  a fifth of that (``benchmarks/bench_llm.py --clients`` measures both), which is what a
  local vLLM server answering thousands of calls a second needs.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Any

import orjson

from stagbench.agents.models.base import (
    ChatMessage,
    GenerateConfig,
    ModelAPI,
    ModelOutput,
    OutputSchema,
)
from stagbench.agents.models.providers._http import retry_after, sdk_error, short, status_retryable
from stagbench.agents.models.safety import check_base_url
from stagbench.errors import MissingExtraError, ModelError

if TYPE_CHECKING:
    import aiohttp

CLIENTS = ("sdk", "http")


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
        client: str = "sdk",
    ) -> None:
        if client not in CLIENTS:
            raise ModelError(f"{model}: client must be one of {', '.join(CLIENTS)}, not {client!r}")
        self.client = client
        self.model = model
        urls = [base_url] if isinstance(base_url, str) or base_url is None else list(base_url)
        if not urls:
            raise ModelError(f"{model}: an empty list of base URLs")
        for u in urls:
            check_base_url(u, model, "the model's API key variable (api_key_env)")
        self.base_url = None if urls == [None] else "|".join(str(u) for u in urls)
        self.secret = api_key
        self.structured = structured
        self.token_param = token_param
        self.extra_body = extra_body or {}
        self.urls = [(u or "https://api.openai.com/v1").rstrip("/") for u in urls]
        self.clients: list[Any] = []
        if client == "sdk":
            try:
                import openai
            except ImportError as exc:  # pragma: no cover - openai is a core dependency
                raise MissingExtraError("openai", "openai", "OpenAI models") from exc
            # Retries belong to the Model wrapper: the SDK must not retry on its own.
            self.clients = [
                openai.AsyncOpenAI(api_key=api_key or "EMPTY", base_url=u, max_retries=0)
                for u in urls
            ]
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._headers = {
            "content-type": "application/json",
            "authorization": f"Bearer {api_key or 'EMPTY'}",
        }
        self.proxies = [env_proxy(u) for u in self.urls]
        self.in_flight = [0] * len(self.urls)
        self.sent = [0] * len(self.urls)

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

    def body(
        self, messages: list[ChatMessage], config: GenerateConfig, schema: OutputSchema | None
    ) -> dict[str, Any]:
        """The request body, the same for both clients."""
        body: dict[str, Any] = {
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "model": self.model,
            self.token_param: config.max_tokens,
            **config.sampling(),
        }
        fmt = self._response_format(schema)
        if fmt is not None:
            body["response_format"] = fmt
        return {**body, **self.extra_body}

    async def generate(
        self,
        messages: list[ChatMessage],
        config: GenerateConfig,
        schema: OutputSchema | None = None,
    ) -> ModelOutput:
        body = self.body(messages, config, schema)
        # Several endpoints: the least busy one, ties to the one that has had the fewest.
        i = min(range(len(self.urls)), key=lambda k: (self.in_flight[k], self.sent[k]))
        self.in_flight[i] += 1
        self.sent[i] += 1
        try:
            if self.client == "http":
                return await self._post(i, body, config.timeout_s)
            return await self._sdk(i, body, config.timeout_s)
        finally:
            self.in_flight[i] -= 1

    async def _sdk(self, i: int, body: dict[str, Any], timeout_s: float) -> ModelOutput:
        import openai

        extra = {k: v for k, v in body.items() if k in self.extra_body}
        kwargs = {k: v for k, v in body.items() if k not in self.extra_body}
        try:
            resp = await self.clients[i].chat.completions.create(
                **kwargs, timeout=timeout_s, **({"extra_body": extra} if extra else {})
            )
        except (openai.APIError, ValueError, RecursionError) as exc:
            raise sdk_error(self.model, exc, openai, [self.secret]) from exc
        if not getattr(resp, "choices", None):
            raise ModelError(f"{self.model}: response has no choices", retryable=True)
        # The SDK builds its reply without validating it: a 200 body of another shape (a
        # null message, NaN or string counts) fails here, a malformed response.
        try:
            choice = resp.choices[0]
            text = choice.message.content or getattr(choice.message, "refusal", None) or ""
            usage = resp.usage
            return ModelOutput(
                text=text,
                input_tokens=usage.prompt_tokens if usage else 0,
                output_tokens=usage.completion_tokens if usage else 0,
                model=resp.model or self.model,
                finish_reason=choice.finish_reason,
                system_fingerprint=getattr(resp, "system_fingerprint", None) or None,
                request_id=getattr(resp, "id", None) or None,
            )
        except (TypeError, AttributeError, KeyError, IndexError, ValueError) as exc:
            raise sdk_error(self.model, exc, openai, [self.secret]) from None

    def _http_session(self) -> aiohttp.ClientSession:
        import aiohttp

        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            self._session_loop = loop
            # No pool limit here: the Model wrapper's slots bound the calls in flight.
            connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
            # Proxies come from the environment, looked up once per endpoint here: aiohttp's
            # trust_env looks them up on every request (a third of this client's CPU).
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def _post(self, i: int, body: dict[str, Any], timeout_s: float) -> ModelOutput:
        import aiohttp

        session = self._http_session()
        url = f"{self.urls[i]}/chat/completions"
        try:
            async with session.post(
                url,
                data=orjson.dumps(body),
                headers=self._headers,
                proxy=self.proxies[i],
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as resp:
                raw = await resp.read()
                status, headers = resp.status, resp.headers
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise ModelError(
                f"{self.model}: no reply within {timeout_s:g}s", retryable=True
            ) from exc
        except aiohttp.ClientError as exc:
            text = short(f"{type(exc).__name__}: {exc}", [self.secret])
            raise ModelError(f"{self.model}: {text}", retryable=True) from exc
        if status >= 400:
            raise ModelError(
                f"{self.model}: HTTP {status}: {short(_error_message(raw), [self.secret])}",
                retryable=status_retryable(status),
                retry_after=retry_after(headers),
            )
        return self._parse(raw)

    def _parse(self, raw: bytes) -> ModelOutput:
        try:
            data = _loads(raw)
            choice = data["choices"][0]
            message = choice["message"]
            text = message.get("content") or message.get("refusal") or ""
            usage = data.get("usage") or {}
            if not isinstance(text, str):
                raise TypeError("message content is not a string")
            return ModelOutput(
                text=text,
                input_tokens=int(usage.get("prompt_tokens") or 0),
                output_tokens=int(usage.get("completion_tokens") or 0),
                model=str(data.get("model") or self.model),
                finish_reason=choice.get("finish_reason"),
                system_fingerprint=data.get("system_fingerprint") or None,
                request_id=data.get("id") or None,
            )
        except (
            orjson.JSONDecodeError,
            KeyError,
            IndexError,
            TypeError,
            ValueError,
            AttributeError,
            RecursionError,  # a body nested past what ``json`` recurses into
        ):
            body = short(raw.decode("utf-8", "replace"), [self.secret])
            raise ModelError(f"{self.model}: malformed response: {body}", retryable=True) from None

    async def aclose(self) -> None:
        for c in self.clients:
            await c.close()
        if self._session is not None and not self._session.closed:
            await self._session.close()


def env_proxy(url: str) -> str | None:
    """The proxy the environment (``HTTPS_PROXY``, ``NO_PROXY``, ...) names for ``url``."""
    parts = urllib.parse.urlsplit(url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


def _loads(raw: bytes) -> Any:
    """JSON of a reply: orjson, or the standard library where orjson refuses what Python
    reads (a lone surrogate escape; the model wrapper then cleans the text)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def _error_message(raw: bytes) -> str:
    """The ``error.message`` of an OpenAI-style error body, else the body as text."""
    try:
        data = orjson.loads(raw)
        if isinstance(data, dict):
            err = data.get("error")
            if isinstance(err, dict) and isinstance(err.get("message"), str):
                return str(err["message"])
            if isinstance(err, str):
                return err
            if isinstance(data.get("message"), str):
                return str(data["message"])
    except orjson.JSONDecodeError:
        pass
    return raw.decode("utf-8", "replace")
