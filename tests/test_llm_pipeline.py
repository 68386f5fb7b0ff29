"""The whole pipeline with LLM agents on mock and loopback models: transcripts, cache,
replay, deceivers, estimates, keys kept out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stagbench.cli import app
from stagbench.records import ActionEvent, MessageEvent, ModelCallEvent, read_transcript
from stagbench.runs.store import RunStore

from fake_openai import Behaviour, FakeOpenAI

runner = CliRunner()

SPEC = """
name = "llm"
seed = 9
[game]
rounds = 3
[agents]
max_reasks = 1
[factors]
models = ["mock/random", ["mock/stag", "mock/garbage"]]
topologies = ["ring"]
disclosures = ["explicit", "silent"]
adversaries = ["none", "deceiver(count=1,placement=hub)"]
"""


def write(tmp: Path, text: str = SPEC) -> Path:
    p = tmp / "spec.toml"
    p.write_text(text)
    return p


def transcripts(out: Path):  # type: ignore[no-untyped-def]
    return [read_transcript(p) for p in RunStore(out).transcript_paths()]


def test_mock_pipeline_records_every_call(tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = runner.invoke(app, ["run", str(write(tmp_path)), "--out", str(out)])
    assert res.exit_code == 0, res.output
    # Not a terminal: progress comes as plain lines with the running token and cost totals.
    assert "[8/8] tok " in res.output and " $0.0000" in res.output
    ts = transcripts(out)
    assert len(ts) == 8
    for t in ts:
        calls = [e for e in t.events if isinstance(e, ModelCallEvent)]
        assert calls and all(c.call.messages and c.call.raw is not None for c in calls)
        assert t.end.input_tokens == sum(c.call.input_tokens for c in calls)
        garbage_seats = {
            s.seat for s in t.header.seats if s.model == "mock/garbage" and s.role == "honest"
        }
        for e in t.events:
            if isinstance(e, ActionEvent) and e.seat in garbage_seats:
                assert e.action is None and e.parse_failed  # never silently hare or stag
            if isinstance(e, MessageEvent) and e.sender in garbage_seats:
                assert e.text is None and e.parse_failed
        if garbage_seats:
            assert t.end.parse_failures == 2 * 3 * len(garbage_seats)
    deceived = [t for t in ts if t.header.trial.adversary.kind == "deceiver"]
    for t in deceived:
        (adv,) = [s for s in t.header.seats if s.role == "adversary"]
        assert adv.model == t.header.trial.models[0]
        acts = [e for e in t.events if isinstance(e, ActionEvent) and e.seat == adv.seat]
        assert all(a.action == "hare" for a in acts)
        talk = [e for e in t.events if isinstance(e, ModelCallEvent) and e.seat == adv.seat]
        assert talk and all(c.call.purpose == "talk" for c in talk)
        assert "Secret instructions" in (t.header.seats[adv.seat].system or "")
        assert "Secret instructions" in t.full_messages(talk[0])[0].content


def test_cache_makes_a_repeated_run_free(tmp_path: Path) -> None:
    spec = write(tmp_path)
    cache = tmp_path / "cache"
    for out in ("a", "b"):
        res = runner.invoke(
            app, ["run", str(spec), "--out", str(tmp_path / out), "--cache-dir", str(cache)]
        )
        assert res.exit_code == 0, res.output
    first = [
        e.call
        for t in transcripts(tmp_path / "a")
        for e in t.events
        if isinstance(e, ModelCallEvent)
    ]
    second = [
        e.call
        for t in transcripts(tmp_path / "b")
        for e in t.events
        if isinstance(e, ModelCallEvent)
    ]
    assert first and not any(c.cached for c in first)
    assert len(second) == len(first) and all(c.cached for c in second)
    assert [c.raw for c in first] == [c.raw for c in second]


def test_replay_provider_reproduces_decisions(tmp_path: Path) -> None:
    out = tmp_path / "orig"
    # Replay matches prompts exactly, so the seating must not depend on the model string:
    # a homogeneous population and an adversary at a fixed seat.
    one = SPEC.replace('["mock/stag", "mock/garbage"]', "").replace(
        '"mock/random", ', '"mock/random"'
    )
    one = one.replace('"deceiver(count=1,placement=hub)"', '"deceiver(count=1,placement=[1])"')
    one = one.replace('"none", ', "").replace('["explicit", "silent"]', '["silent"]')
    assert runner.invoke(app, ["run", str(write(tmp_path, one)), "--out", str(out)]).exit_code == 0
    again = one.replace('"mock/random"', f'"replay/{out}"').replace(
        'name = "llm"', 'name = "again"'
    )
    res = runner.invoke(app, ["run", str(write(tmp_path, again)), "--out", str(tmp_path / "re")])
    assert res.exit_code == 0, res.output

    def actions(folder: Path) -> list[list[str | None]]:
        return sorted(
            [
                [e.action for e in t.events if isinstance(e, ActionEvent)]
                for t in transcripts(folder)
            ]
        )

    assert actions(out) == actions(tmp_path / "re")
    assert len(actions(out)) == 1


def test_provider_outage_fails_the_trial_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-very-secret-key-42"
    with FakeOpenAI() as fake:
        monkeypatch.setenv("LOOP_BASE_URL", fake.base_url)
        monkeypatch.setenv("LOOP_API_KEY", secret)
        spec = write(
            tmp_path,
            """
name = "outage"
[game]
rounds = 2
[factors]
models = ["openai-api/loop/m"]
[model_settings."openai-api"]
max_retries = 1
""",
        )
        body = json.dumps({"error": {"message": f"bad key {secret}"}}).encode()
        fake.default = Behaviour(status=503, raw_body=body)
        out = tmp_path / "out"
        res = runner.invoke(app, ["run", str(spec), "--out", str(out), "--no-cache"])
        assert res.exit_code == 1 and "failed" in res.output
        assert secret not in res.output
        failures = list((out / "failures").iterdir())
        assert len(failures) == 1 and secret not in failures[0].read_text()
        fake.default = Behaviour(text='{"message": "stag!", "reasoning": "x", "action": "stag"}')
        res = runner.invoke(app, ["run", str(spec), "--out", str(out), "--no-cache"])
        assert res.exit_code == 0, res.output
        assert not list((out / "failures").iterdir())
        for path in out.rglob("*"):
            if path.is_file():
                assert secret not in path.read_text(errors="replace"), path
        (t,) = transcripts(out)
        assert t.end.totals == [20.0] * 4


def test_estimate_and_models_commands(tmp_path: Path) -> None:
    spec = write(
        tmp_path, SPEC.replace('"mock/random"', '"openai/gpt-4o-mini", "anthropic/claude-opus-9"')
    )
    res = runner.invoke(app, ["estimate", str(spec)])
    assert res.exit_code == 0, res.output
    assert "openai/gpt-4o-mini" in res.output and "unpriced" in res.output
    assert "no price known for anthropic/claude-opus-9" in res.output
    from stagbench.runs.estimate import estimate
    from stagbench.runs.spec import load_spec

    rows = {e.model: e for e in estimate(load_spec(spec)[0])}
    gpt = rows["openai/gpt-4o-mini"]
    # 4 trials: 4 honest seats x 3 rounds x 2 calls, or 3 honest + deceiver talking only.
    assert gpt.trials == 4 and gpt.calls == 2 * (4 * 6) + 2 * (3 * 6 + 3)
    assert gpt.cost_usd and gpt.cost_usd > 0 and gpt.input_tokens > 1000
    models = runner.invoke(app, ["models"])
    assert (
        models.exit_code == 0 and "local/smollm2-135m" in models.output and "mock" in models.output
    )
