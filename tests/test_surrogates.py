"""Text that cannot be written as UTF-8 (a lone surrogate, raw or as a JSON escape) is made
safe where replies enter, so a trial with such a reply finishes, is cached safely, and its
transcript reads back."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from stagbench.agents.models.base import ChatMessage
from stagbench.agents.models.pool import ModelPool
from stagbench.agents.models.providers.mock import register_mock
from stagbench.records import ActionEvent, MessageEvent, read_transcript
from stagbench.runs.orchestrator import run_trials
from stagbench.runs.spec import parse_spec
from stagbench.runs.store import RunStore

from fake_openai import Behaviour, FakeOpenAI

SPEC = """
name = "lone"
seed = 1
[game]
n_players = 2
rounds = 2
[agents]
max_reasks = 0
[factors]
models = ["{model}"]
{extra}
"""


def _escaped(messages: list[ChatMessage], purpose: str | None) -> str:
    # JSON text holding escapes of lone surrogates (ASCII, so the reply itself is fine)
    if purpose == "talk":
        return '{"message": "hi \\udc00 there"}'
    return '{"reasoning": "a\\ud800b", "action": "stag"}'


def _raw(messages: list[ChatMessage], purpose: str | None) -> str:
    # a reply string holding a lone surrogate itself (as an SDK's json.loads can produce)
    if purpose == "talk":
        return json.dumps({"message": "hi there"}).replace("there", "there \udfff")
    return '{"reasoning": "a\ud800b", "action": "stag"}'


def test_clean_text() -> None:
    from stagbench.agents.models.model import clean_text

    assert clean_text("plain ascii") == "plain ascii"
    assert clean_text("a\ud800b") == "a\ufffdb"
    assert clean_text("pair \ud83d\ude00 kept") == "pair \U0001f600 kept"
    assert clean_text('"a\\ud800b"') == '"a\\ufffdb"'
    assert clean_text('"\\ud83d\\ude00"') == '"\\ud83d\\ude00"'  # a valid pair stays
    assert clean_text('"\\\\ud800"') == '"\\\\ud800"'  # an escaped backslash, not an escape
    assert clean_text('"\\udc00\\ud800"') == '"\\ufffd\\ufffd"'


def _run(text: str, out: Path, cache: Path) -> list[str]:
    spec = parse_spec(text)
    store = RunStore(out)
    store.open(spec, text, spec.trials())
    pool = ModelPool(spec.model_settings, cache_dir=cache)
    summary = asyncio.run(run_trials(spec, spec.trials(), store, pool=pool))
    assert summary.failed == 0 and summary.finished, summary.errors
    (path,) = store.transcript_paths()
    t = read_transcript(path)
    acts = [e.reasoning or "" for e in t.events if isinstance(e, ActionEvent)]
    said = [e.text or "" for e in t.events if isinstance(e, MessageEvent)]
    return acts + said


@pytest.mark.parametrize("reply", [_escaped, _raw], ids=["escaped", "raw"])
def test_a_lone_surrogate_in_a_reply_does_not_sink_the_trial(reply, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name = f"lone-{reply.__name__.strip('_')}"
    register_mock(name, reply)
    text = SPEC.format(model=f"mock/{name}", extra="")
    cache = tmp_path / "cache"
    first = _run(text, tmp_path / "a", cache)
    assert any("\ufffd" in x for x in first)
    assert _run(text, tmp_path / "b", cache) == first  # from the cache, the same


@pytest.mark.parametrize("client", ["sdk", "http"])
def test_a_server_sending_a_lone_surrogate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client: str
) -> None:
    content = '{"reasoning": "bad \\ud800 char", "action": "stag"}'
    body = {
        "id": "x", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "CONTENT"}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1},
    }  # fmt: skip
    # the content string itself holds a lone surrogate: "\ud800" escaped inside the body
    raw = json.dumps(body).replace('"CONTENT"', json.dumps(content).replace("\\\\", "\\"))
    with FakeOpenAI() as fake:
        fake.default = Behaviour(raw_body=raw.encode())
        monkeypatch.setenv("FAKE_BASE_URL", fake.base_url)
        extra = f'[model_settings."openai-api/fake/m"]\noptions = {{client = "{client}"}}\n'
        got = _run(
            SPEC.format(model="openai-api/fake/m", extra=extra), tmp_path / "o", tmp_path / "c"
        )
    assert any("bad \ufffd char" in x for x in got)
