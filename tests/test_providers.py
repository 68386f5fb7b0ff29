"""Providers through their real SDKs, over loopback (a fake OpenAI-compatible server) and
respx; no network."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import pytest

from stagbench.agents.models.base import ChatMessage, GenerateConfig
from stagbench.agents.models.batching import Batcher
from stagbench.agents.models.pool import ModelPool
from stagbench.agents.models.providers.vllm import ManagedServerAPI
from stagbench.agents.models.registry import create_api, resolve
from stagbench.agents.models.settings import ModelSettings
from stagbench.agents.prompts import TALK_SCHEMA, act_schema
from stagbench.errors import MissingExtraError, ModelError, ModelNotFoundError

from fake_openai import Behaviour, FakeOpenAI

MSGS = [ChatMessage(role="system", content="rules"), ChatMessage(role="user", content="go")]
CFG = GenerateConfig(temperature=0.5, max_tokens=50, seed=3, timeout_s=5)
SECRET = "sk-test-SECRET-0123456789"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    with FakeOpenAI() as server:
        monkeypatch.setenv("FAKE_BASE_URL", server.base_url)
        monkeypatch.setenv("FAKE_API_KEY", SECRET)
        yield server


@pytest.fixture(params=["sdk", "http"])
def client(request: pytest.FixtureRequest) -> str:
    """Every OpenAI-compatible test runs through the official SDK and the lean HTTP client."""
    return str(request.param)


def pool(client: str = "sdk", **settings: object) -> ModelPool:
    s = ModelSettings.model_validate({"max_retries": 3, **settings, "options": {"client": client}})
    p = ModelPool({"openai-api": s})
    for m in ("openai-api/fake/m1",):
        p.get(m).backoff_base_s = 0.01
    return p


async def test_openai_compatible_structured_output(fake: FakeOpenAI, client: str) -> None:
    model = pool(client).get("openai-api/fake/m1")
    res = await model.generate(MSGS, CFG, act_schema(True))
    assert json.loads(res.output.text)["action"] == "stag"
    assert (res.output.input_tokens, res.output.output_tokens) == (11, 7)
    req = fake.requests[0]
    assert req["model"] == "m1" and req["seed"] == 3 and req["max_tokens"] == 50
    fmt = req["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"]["properties"]["action"]["enum"] == ["stag", "hare"]
    assert fake.auth[0] == f"Bearer {SECRET}"


async def test_both_clients_send_the_same_request(fake: FakeOpenAI) -> None:
    outs = [
        await pool(c).get("openai-api/fake/m1").generate(MSGS, CFG, act_schema(True))
        for c in ("sdk", "http")
    ]
    assert fake.requests[0] == fake.requests[1]
    assert fake.auth[0] == fake.auth[1] == f"Bearer {SECRET}"
    assert fake.paths[0] == fake.paths[1] == "/v1/chat/completions"
    same = [o.output.model_copy(update={"request_id": None}) for o in outs]
    assert same[0] == same[1]  # the request id is each reply's own
    assert outs[0].output.request_id != outs[1].output.request_id


async def test_unknown_client_is_a_clear_error(fake: FakeOpenAI) -> None:
    with pytest.raises(ModelError, match="client must be one of sdk, http"):
        pool("curl").get("openai-api/fake/m1")


async def test_429_with_retry_after_is_honoured(fake: FakeOpenAI, client: str) -> None:
    fake.script = [Behaviour(status=429, headers={"retry-after": "0.4"}), Behaviour()]
    model = pool(client).get("openai-api/fake/m1")
    t0 = time.perf_counter()
    res = await model.generate(MSGS, CFG, TALK_SCHEMA)
    assert time.perf_counter() - t0 >= 0.38
    assert res.attempts == 2 and model.usage.retries == 1


async def test_500_retried_then_ok_and_400_not_retried(fake: FakeOpenAI, client: str) -> None:
    fake.script = [Behaviour(status=500), Behaviour(status=503), Behaviour()]
    model = pool(client).get("openai-api/fake/m1")
    assert (await model.generate(MSGS, CFG)).attempts == 3
    fake.script = [Behaviour(status=400)]
    with pytest.raises(ModelError, match="HTTP 400") as info:
        await model.generate(MSGS, CFG)
    assert not info.value.retryable
    assert len(fake.requests) == 4


async def test_retries_are_bounded(fake: FakeOpenAI, client: str) -> None:
    fake.default = Behaviour(status=500)
    model = pool(client, max_retries=2).get("openai-api/fake/m1")
    with pytest.raises(ModelError, match=r"after 3 attempt"):
        await model.generate(MSGS, CFG)
    assert len(fake.requests) == 3


async def test_malformed_json_body(fake: FakeOpenAI, client: str) -> None:
    fake.script = [Behaviour(raw_body=b"{not json"), Behaviour()]
    model = pool(client).get("openai-api/fake/m1")
    res = await model.generate(MSGS, CFG)
    assert res.attempts == 2
    fake.default = Behaviour(raw_body=b"<html>gateway</html>")
    with pytest.raises(ModelError):
        await model.generate(MSGS, CFG)


async def test_timeout_is_retried(fake: FakeOpenAI, client: str) -> None:
    fake.script = [Behaviour(delay_s=1.5), Behaviour()]
    model = pool(client).get("openai-api/fake/m1")
    cfg = CFG.model_copy(update={"timeout_s": 0.3})
    res = await model.generate(MSGS, cfg)
    assert res.attempts == 2
    fake.default = Behaviour(delay_s=1.5)
    with pytest.raises(ModelError, match="no reply within|Timeout"):
        await pool(client, max_retries=0).get("openai-api/fake/m1").generate(MSGS, cfg)


async def test_concurrency_limit_holds(fake: FakeOpenAI, client: str) -> None:
    fake.default = Behaviour(delay_s=0.15)
    model = pool(client, max_concurrency=3).get("openai-api/fake/m1")
    await asyncio.gather(*(model.generate(MSGS, CFG) for _ in range(10)))
    assert fake.max_in_flight == 3


async def test_requests_per_minute_limit(fake: FakeOpenAI, client: str) -> None:
    model = pool(client, requests_per_minute=600).get("openai-api/fake/m1")  # 10 a second
    t0 = time.perf_counter()
    await asyncio.gather(*(model.generate(MSGS, CFG) for _ in range(15)))
    assert time.perf_counter() - t0 >= 0.4


async def test_api_key_never_in_errors(fake: FakeOpenAI, client: str) -> None:
    body = json.dumps({"error": {"message": f"Incorrect API key provided: {SECRET}"}}).encode()
    fake.default = Behaviour(status=401, raw_body=body)
    with pytest.raises(ModelError) as info:
        await pool(client).get("openai-api/fake/m1").generate(MSGS, CFG)
    assert SECRET not in str(info.value) and "[REDACTED]" in str(info.value)


async def test_openai_native(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
    fake.script = [
        Behaviour(status=429, headers={"retry-after-ms": "50"}),
        Behaviour(text='{"message": "hi"}'),
    ]
    model = ModelPool().get("openai/gpt-4o-mini")
    res = await model.generate(MSGS, CFG, TALK_SCHEMA)
    body = fake.requests[-1]
    assert body["max_completion_tokens"] == 50 and "max_tokens" not in body
    assert body["response_format"]["json_schema"]["name"] == "talk"
    assert res.output.text == '{"message": "hi"}' and res.attempts == 2
    assert res.cost_usd == pytest.approx((11 * 0.15 + 7 * 0.60) / 1e6)
    assert fake.auth[-1] == f"Bearer {SECRET}"


async def test_anthropic_forced_tool_use(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.base_url.removesuffix("/v1"))
    fake.script = [
        Behaviour(
            status=529,
            raw_body=b'{"type":"error","error":{"type":"overloaded_error","message":"busy"}}',
        ),
        Behaviour(),
    ]
    model = ModelPool().get("anthropic/claude-haiku-4-5")
    model.backoff_base_s = 0.01
    res = await model.generate(MSGS, CFG, act_schema(True))
    body = fake.requests[-1]
    assert fake.paths[-1] == "/v1/messages"
    assert body["system"] == "rules"
    assert body["messages"] == [{"role": "user", "content": "go"}]
    assert body["tool_choice"] == {"type": "tool", "name": "act"}
    assert body["tools"][0]["input_schema"]["required"] == ["reasoning", "action"]
    assert json.loads(res.output.text) == {"reasoning": "ok", "action": "stag"}
    assert (res.output.input_tokens, res.output.output_tokens, res.attempts) == (200, 20, 2)
    assert SECRET in (fake.auth[-1] or "")


async def test_anthropic_native_output_format(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.base_url.removesuffix("/v1"))
    p = ModelPool({"anthropic": ModelSettings(options={"structured": "json_schema"})})
    model = p.get("anthropic/claude-sonnet-4-6")
    await model.generate(MSGS, CFG, act_schema(False))
    body = fake.requests[-1]
    if "output_config" in model.api.accepted:  # type: ignore[attr-defined]
        assert body["output_config"]["format"]["schema"]["required"] == ["action"]
        assert "tools" not in body
    else:
        assert body["tool_choice"]["name"] == "act"


async def test_vllm_against_running_server(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VLLM_BASE_URL", fake.base_url)
    model = ModelPool().get("vllm/Qwen/Qwen2.5-0.5B-Instruct")
    assert model.api.client == "http"  # type: ignore[attr-defined]  # the lean client by default
    await model.generate(MSGS, CFG, act_schema(False))
    assert fake.requests[0]["model"] == "Qwen/Qwen2.5-0.5B-Instruct"
    assert fake.requests[0]["response_format"]["type"] == "json_schema"


async def test_managed_server_lifecycle(tmp_path: Path) -> None:
    here = str(Path(__file__).resolve().parent)
    cmd = [sys.executable, "-c", f"import sys; sys.path.insert(0, {here!r}); import runpy; "
           "runpy.run_module('fake_openai', run_name='__main__')", "--port", "{port}"]  # fmt: skip
    api = ManagedServerAPI("some/model", {"command": cmd, "startup_timeout_s": 30})
    out = await api.generate(MSGS, CFG, TALK_SCHEMA)
    assert out.input_tokens == 11
    proc = api.proc
    assert proc is not None and proc.poll() is None
    await api.aclose()
    assert proc.poll() is not None
    dead = ManagedServerAPI("x", {"command": [sys.executable, "-c", "raise SystemExit(3)"]})
    with pytest.raises(ModelError, match="exited with code 3"):
        await dead.generate(MSGS, CFG)


async def test_batcher_gathers_concurrent_requests() -> None:
    seen: list[list[int]] = []

    def run(batch: list[int]) -> list[int]:
        seen.append(batch)
        time.sleep(0.05)
        return [x * 2 for x in batch]

    b: Batcher[int, int] = Batcher(run, max_batch=8)
    results = await asyncio.gather(*(b.submit(i) for i in range(20)))
    assert results == [2 * i for i in range(20)]
    assert b.batch_sizes == [8, 8, 4]

    def broken(batch: list[int]) -> list[int]:
        raise RuntimeError("engine died")

    with pytest.raises(RuntimeError, match="engine died"):
        await Batcher(broken).submit(1)


def test_registry_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelNotFoundError, match="unknown provider 'gpt'"):
        resolve("gpt/4")
    with pytest.raises(ModelNotFoundError, match="provider/model"):
        resolve("gpt-4o")
    with pytest.raises(ModelNotFoundError, match="openai-api/<name>/<model>"):
        resolve("openai-api/only-one-part")
    monkeypatch.delenv("NOPE_BASE_URL", raising=False)
    with pytest.raises(ModelError, match="NOPE_BASE_URL"):
        create_api("openai-api/nope/m")
    with pytest.raises(ModelError, match="neither local/smollm2-135m nor"):
        create_api("local/missing.gguf")
    with pytest.raises(ModelNotFoundError, match="no mock named"):
        create_api("mock/unknown-behaviour")
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(MissingExtraError, match=r"stagbench\[vllm\]"):
            create_api("vllm-offline/some/model")


async def test_vllm_offline_glue_against_a_stand_in_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """vLLM cannot be installed here (no GPU, no wheels offline), so this drives our glue
    through a stand-in for the documented interface: ``vllm.LLM(...).chat(conversations,
    sampling_params=[...])`` returning RequestOutputs, ``SamplingParams(**kw)`` and
    ``sampling_params.StructuredOutputsParams(json=...)``. It checks batching across
    concurrent calls, the structured-output and seed mapping, and the output mapping."""
    import types

    batches: list[tuple[list[list[dict[str, str]]], list[dict[str, object]]]] = []

    class StructuredOutputsParams:
        def __init__(self, json: dict[str, object]) -> None:
            self.json = json

    class SamplingParams:
        def __init__(self, **kw: object) -> None:
            self.kw = kw

    class LLM:
        def __init__(self, model: str, **engine_args: object) -> None:
            self.model, self.engine_args = model, engine_args

        def chat(self, convs, sampling_params, use_tqdm):  # type: ignore[no-untyped-def]
            batches.append((convs, [p.kw for p in sampling_params]))
            out = types.SimpleNamespace
            return [
                out(
                    prompt_token_ids=[1] * 9,
                    outputs=[
                        out(text='{"action": "stag"}', token_ids=[1, 2, 3], finish_reason="stop")
                    ],
                )
                for _ in convs
            ]

    sp = types.SimpleNamespace(StructuredOutputsParams=StructuredOutputsParams)
    fake = types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams, sampling_params=sp)
    monkeypatch.setitem(sys.modules, "vllm", fake)
    api = create_api("vllm-offline/Qwen/Qwen2.5-0.5B-Instruct")
    outs = await asyncio.gather(
        *(
            api.generate(MSGS, CFG.model_copy(update={"seed": i}), act_schema(False))
            for i in range(12)
        )
    )
    assert len(batches) == 1 and len(batches[0][0]) == 12  # one engine call for the round
    convs, params = batches[0]
    assert convs[0] == [m.model_dump() for m in MSGS]
    assert sorted(p["seed"] for p in params) == list(range(12))  # type: ignore[type-var]
    assert params[0]["max_tokens"] == 50 and params[0]["temperature"] == 0.5
    assert params[0]["structured_outputs"].json["required"] == ["action"]  # type: ignore[attr-defined]
    assert outs[0].text == '{"action": "stag"}'
    assert (outs[0].input_tokens, outs[0].output_tokens) == (9, 3)
    assert api.llm.engine_args["enable_prefix_caching"] is True  # type: ignore[attr-defined]


def test_http_client_takes_proxies_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from stagbench.agents.models.providers.openai_api import env_proxy

    for var in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    assert env_proxy("https://api.openai.com/v1") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    assert env_proxy("https://api.openai.com/v1") == "http://proxy.example:3128"
    assert env_proxy("http://api.openai.com/v1") is None  # no HTTP_PROXY set
    assert env_proxy("https://127.0.0.1:8000/v1") is None  # bypassed
