"""Replies that a server sends with status 200 but that are not what the API promises
(no content, null or NaN usage, negative token counts, a body nested past what a JSON
parser recurses into): each is a ``ModelError`` saying "malformed response", retried like
any other provider fault, never a raw Python error and never a negative cost. Through the
real SDKs and the lean HTTP client, over loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stagbench.agents.models.base import ChatMessage, GenerateConfig
from stagbench.agents.models.model import Model
from stagbench.agents.models.pool import ModelPool
from stagbench.agents.models.settings import ModelSettings
from stagbench.agents.prompts import act_schema
from stagbench.errors import ModelError

from fake_openai import Behaviour, FakeOpenAI

MSGS = [ChatMessage(role="system", content="rules"), ChatMessage(role="user", content="go")]
CFG = GenerateConfig(temperature=0.5, max_tokens=50, seed=3, timeout_s=5)
SECRET = "sk-test-SECRET-0123456789"
#: each client the red team named: (model, settings options)
CLIENTS = {
    "sdk": ("openai-api/fake/m1", {"client": "sdk"}),
    "http": ("openai-api/fake/m1", {"client": "http"}),
    "openai": ("openai/gpt-4o-mini", {}),
    "anthropic": ("anthropic/claude-haiku-4-5", {}),
}
REPLY = '{\\"reasoning\\": \\"ok\\", \\"action\\": \\"stag\\"}'


def completion(usage: str = '{"prompt_tokens": 11, "completion_tokens": 7}') -> bytes:
    return (
        '{"id": "c1", "object": "chat.completion", "created": 1, "model": "m", "choices": '
        '[{"index": 0, "message": {"role": "assistant", "content": "' + REPLY + '"}, '
        '"finish_reason": "stop"}], "usage": ' + usage + "}"
    ).encode()


def message(usage: str = '{"input_tokens": 11, "output_tokens": 7}') -> bytes:
    return (
        '{"id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": '
        '[{"type": "text", "text": "' + REPLY + '"}], "stop_reason": "end_turn", '
        '"usage": ' + usage + "}"
    ).encode()


def body(client: str, usage: str) -> bytes:
    return message(usage) if client == "anthropic" else completion(usage)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    with FakeOpenAI() as server:
        monkeypatch.setenv("FAKE_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url.removesuffix("/v1"))
        for env in ("FAKE_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
            monkeypatch.setenv(env, SECRET)
        yield server


def model_for(client: str, **settings: object) -> Model:
    name, options = CLIENTS[client]
    s = ModelSettings.model_validate({"max_retries": 2, **settings, "options": options})
    model = ModelPool({name.split("/", 1)[0]: s}).get(name)
    model.backoff_base_s = 0.001
    return model


async def retried_then_ok(fake: FakeOpenAI, client: str, bad: bytes) -> ModelError:
    """``bad`` is retried (then the good reply is used), and alone it is a malformed
    response; the error it gives."""
    good = message() if client == "anthropic" else completion()
    fake.script = [Behaviour(raw_body=bad), Behaviour(raw_body=good)]
    model = model_for(client)
    res = await model.generate(MSGS, CFG, act_schema(True))
    await model.aclose()
    assert res.attempts == 2 and json.loads(res.output.text)["action"] == "stag"
    assert (res.output.input_tokens, res.output.output_tokens) == (11, 7)
    fake.default = Behaviour(raw_body=bad)
    model = model_for(client, max_retries=0)
    with pytest.raises(ModelError, match="malformed response") as info:
        await model.generate(MSGS, CFG, act_schema(True))
    await model.aclose()
    assert info.value.retryable
    return info.value


BAD_USAGE = {
    "negative": ("-1000000", "-5"),
    "absurd": ("1" + "0" * 30, "7"),
}


@pytest.mark.parametrize("client", list(CLIENTS))
@pytest.mark.parametrize("kind", list(BAD_USAGE))
async def test_negative_or_absurd_token_counts_are_a_malformed_response(
    fake: FakeOpenAI, client: str, kind: str
) -> None:
    """A provider reporting negative (or absurd) token counts would make a negative cost
    that keeps budget_usd and max_cost_usd from ever stopping a run."""
    i, o = BAD_USAGE[kind]
    if client == "anthropic":
        usage = f'{{"input_tokens": {i}, "output_tokens": {o}}}'
    else:
        usage = f'{{"prompt_tokens": {i}, "completion_tokens": {o}, "total_tokens": 0}}'
    err = await retried_then_ok(fake, client, body(client, usage))
    assert "token count" in str(err)
    # what was spent is what the good replies cost: never less than nothing
    fake.default = Behaviour(raw_body=body(client, usage))
    model = model_for(client, max_retries=0, max_cost_usd=0.001)
    for _ in range(3):
        with pytest.raises(ModelError):
            await model.generate(MSGS, CFG)
    await model.aclose()
    assert model.usage.cost_usd == 0 and model.run_budget.spent_usd == 0
    assert model.usage.input_tokens == model.usage.output_tokens == 0


ANTHROPIC_BAD = {
    "an OpenAI-shaped body": b'{"id": "x", "choices": [], "usage": null}',
    "null content": message().replace(b'"content": [', b'"content": null, "x": ['),
    "null usage": message("null"),
    "NaN usage": message('{"input_tokens": NaN, "output_tokens": 7}'),
    "a body nested too deeply": b'{"content": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
}


@pytest.mark.parametrize("what", list(ANTHROPIC_BAD))
async def test_anthropic_malformed_200_is_a_retried_model_error(
    fake: FakeOpenAI, what: str
) -> None:
    await retried_then_ok(fake, "anthropic", ANTHROPIC_BAD[what])


OPENAI_BAD = {
    "NaN usage": completion('{"prompt_tokens": NaN, "completion_tokens": -5}'),
    "string usage": completion('{"prompt_tokens": "many", "completion_tokens": 7}'),
    "null message": completion().replace(
        b'"message": {"role": "assistant", "content": "' + REPLY.encode() + b'"}',
        b'"message": null',
    ),
    "a body nested too deeply": b'{"choices": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
}


@pytest.mark.parametrize(
    ("what", "client"),
    # (the http client read the others as malformed already: it parses the body itself)
    [(w, c) for w in OPENAI_BAD for c in ("sdk", "openai")]
    + [("a body nested too deeply", "http")],
)
async def test_openai_malformed_200_is_a_retried_model_error(
    fake: FakeOpenAI, client: str, what: str
) -> None:
    err = await retried_then_ok(fake, client, OPENAI_BAD[what])
    if what == "NaN usage" and client != "http":  # the SDK's reply, checked by ModelOutput
        assert "input_tokens: Input should be a finite number" in str(err)


async def test_a_cached_reply_with_negative_token_counts_is_asked_again(
    fake: FakeOpenAI, tmp_path: Path
) -> None:
    """A cache written before counts were checked may hold negative ones: not used."""
    s = ModelSettings.model_validate({"max_retries": 0, "options": {"client": "http"}})
    pool = ModelPool({"openai-api": s}, cache_dir=tmp_path)
    model = pool.get("openai-api/fake/m1")
    await model.generate(MSGS, CFG)
    (entry,) = tmp_path.rglob("*.json")
    old = json.loads(entry.read_text())
    entry.write_text(json.dumps({**old, "input_tokens": -1_000_000}))
    res = await model.generate(MSGS, CFG)
    await pool.aclose()
    assert not res.cached and len(fake.requests) == 2
    assert res.output.input_tokens == 11 and model.usage.input_tokens == 22
    assert json.loads(entry.read_text())["input_tokens"] == 11  # the good reply, cached again
