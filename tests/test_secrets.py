"""No API key (or any long piece of one) and no password of a base URL is ever written:
not to stderr, not to failures/*.txt, not into the results folder."""

from __future__ import annotations

import json
import random
import string
import urllib.parse
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stagbench.agents.models.model import redact
from stagbench.agents.models.registry import create_api
from stagbench.agents.models.settings import ModelSettings
from stagbench.cli import app
from stagbench.errors import ModelError, SpecError
from stagbench.runs.spec import parse_spec

from fake_openai import Behaviour, FakeOpenAI

runner = CliRunner()
KEY = "sk-test-9fQ2vX7LmP3kR8sT1uW4yZ6aB0cD5eF7gH9jK2"
#: where provider error text used to be cut; the key is placed across every position of it
CUT = 300


def _leaks(text: str, secret: str, n: int = 8) -> list[str]:
    """Every stretch of ``n`` characters of ``secret`` found in ``text``."""
    return [secret[i : i + n] for i in range(len(secret) - n + 1) if secret[i : i + n] in text]


def test_redact_replaces_the_key_and_any_long_prefix_of_it() -> None:
    assert redact(f"key {KEY} end", [KEY]) == "key [REDACTED] end"
    for cut in range(8, len(KEY)):
        text = f"Incorrect API key provided: {KEY[:cut]}..."
        assert not _leaks(redact(text, [KEY]), KEY), cut
    assert redact("sk-test- is a common start", [KEY]) == "[REDACTED] is a common start"
    assert redact("nothing here", [KEY]) == "nothing here"


def test_redact_replaces_any_piece_of_the_key_in_any_case_or_url_encoding() -> None:
    """A tail, a middle, the key upper-cased or URL-encoded, pieces that overlap or sit side
    by side: each stretch becomes one ``[REDACTED]``, and the text around it is kept, as is
    ordinary text."""
    pieces = {
        "tail": KEY[5:],
        "middle": KEY[3:-3],
        "last 8": KEY[-8:],
        "upper": KEY.upper(),
        "upper tail": KEY[10:].upper(),
        "mixed case": KEY[:20].swapcase() + KEY[20:],
        "quote": urllib.parse.quote(KEY, safe=""),
        "quote_plus": urllib.parse.quote_plus(KEY),
        "every dash as %2D": KEY.replace("-", "%2D"),
        "every character escaped": "".join(f"%{ord(c):02x}" for c in KEY[4:20]),
        "overlapping": KEY[2:14] + KEY[6:20],
        "adjacent": KEY[:10] + KEY[25:],
        "repeated": KEY[12:22] * 3,
    }
    for what, piece in pieces.items():
        text = f"Incorrect API key provided: ...{piece}. Check it."
        out = redact(text, [KEY])
        assert out == "Incorrect API key provided: ...[REDACTED]. Check it.", (what, out)
    # two separate pieces: each replaced, the text between them kept
    two = redact(f"a {KEY[:9]} b {KEY[-9:].upper()} c", [KEY])
    assert two == "a [REDACTED] b [REDACTED] c"
    # non-ASCII text around a piece (str.lower would move the positions)
    assert redact(f"İİ {KEY[7:30]} ß", [KEY]) == "İİ [REDACTED] ß"
    # ordinary text, and pieces shorter than 8 characters, are kept as they are
    text = "ordinary text: sk-tes, 9fQ2vX7 (7 characters of the key), 100% sure %2D, ümlaut İ"
    assert redact(text, [KEY]) == text
    assert redact(KEY[:7] + " " + KEY[7:14], [KEY]) == KEY[:7] + " " + KEY[7:14]
    # a short key (MIN_KEY to MIN_PREFIX characters) is replaced only whole
    assert redact("pw abc123 and abc1", ["abc123"]) == "pw [REDACTED] and abc1"
    assert redact("tiny abc", ["abc"]) == "tiny abc"  # shorter than MIN_KEY: left alone


def test_redact_leaves_no_eight_characters_of_a_key_in_random_mixes() -> None:
    """Against a brute-force check: pieces of random keys, in any case, some URL-encoded,
    mixed with filler; no 8 characters of the key survive, decoded or not."""
    rng = random.Random(19)
    alphabet = string.ascii_letters + string.digits + "-_"
    for _ in range(1500):
        key = "".join(rng.choice(alphabet) for _ in range(rng.randint(9, 70)))
        parts = []
        for _ in range(rng.randint(1, 4)):
            a = rng.randint(0, len(key) - 1)
            piece = key[a : rng.randint(a, len(key))]
            r = rng.random()
            if r < 0.2:
                piece = piece.upper()
            elif r < 0.35:
                piece = urllib.parse.quote(piece, safe="")
            elif r < 0.45:
                piece = piece.replace("-", "%2D").replace("_", "%5f")
            parts += [piece, rng.choice(["", " ", "..", "xyz"])]
        text = "".join(parts)
        out = redact(text, [key])
        assert not _leaks(urllib.parse.unquote(out).lower(), key.lower()), (key, text, out)


SPEC = """
name = "leaky"
seed = 1
repetitions = {reps}
[game]
n_players = 2
rounds = 1
talk_phases = 1
[factors]
models = [["{model}", "scripted/always-stag"]]
[model_settings."{model}"]
max_retries = 0
{extra}
"""


def _pointed(fake: FakeOpenAI, client: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """The model string and spec extra of ``client`` (``anthropic``, or an OpenAI-compatible
    client), its key KEY and its base URL the loopback server ``fake``."""
    if client == "anthropic":
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.base_url.removesuffix("/v1"))
        return "anthropic/claude-haiku-4-5", ""
    monkeypatch.setenv("FAKE_API_KEY", KEY)
    monkeypatch.setenv("FAKE_BASE_URL", fake.base_url)
    return "openai-api/fake/m1", f'options = {{client = "{client}"}}'


def _error_bodies(prefix_room: int = 80) -> list[bytes]:
    """Error bodies whose message puts the key across every cut position, whatever the
    client adds in front of the message (an SDK prefixes ``Error code: 401 - {...``)."""
    bodies = []
    for pad in range(CUT - len(KEY) - prefix_room, CUT + 2):
        message = "x" * pad + KEY + " was refused"
        body = {"type": "error", "error": {"type": "authentication_error", "message": message}}
        bodies.append(json.dumps(body).encode())
    return bodies


@pytest.mark.parametrize("client", ["sdk", "http", "anthropic"])
def test_key_echoed_across_every_cut_position_never_leaks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client: str
) -> None:
    with FakeOpenAI() as fake:
        bodies = _error_bodies()
        fake.script = [Behaviour(status=401, raw_body=b) for b in bodies]
        model, extra = _pointed(fake, client, monkeypatch)
        spec = tmp_path / "spec.toml"
        spec.write_text(SPEC.format(reps=len(bodies), model=model, extra=extra))
        out = tmp_path / "out"
        res = runner.invoke(
            app, ["run", str(spec), "--out", str(out), "--concurrency", "1", "--no-progress"]
        )
        assert not fake.script, "every error body was served"
    assert res.exit_code == 1, res.output
    failures = sorted((out / "failures").glob("*.txt"))
    assert len(failures) == len(bodies)
    texts = [p.read_text() for p in failures]
    # the error first, then its traceback (rt43 F8: the report shows the first line)
    assert all(t.split(": ", 1)[0] == "ModelError" and "\nTraceback (most" in t for t in texts)
    # where the key came before the cut it was redacted; past it, it was cut away whole
    assert sum("[REDACTED]" in t for t in texts) >= 10
    assert not _leaks(res.output + (res.stderr or ""), KEY)
    for t in texts:
        assert not _leaks(t, KEY), t[-600:]
    for p in out.rglob("*"):
        if p.is_file():
            assert not _leaks(p.read_text(errors="replace"), KEY), p


CREDS = "http://alice:hunter2-secret-pw@127.0.0.1:9/v1"


def test_base_url_with_credentials_is_refused_in_the_spec(tmp_path: Path) -> None:
    text = SPEC.format(reps=1, model="openai-api/fake/m1", extra=f'base_url = "{CREDS}"')
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    assert "credentials" in str(info.value) and "hunter2" not in str(info.value)
    spec = tmp_path / "spec.toml"
    spec.write_text(text)
    for cmd in (["validate", str(spec)], ["run", str(spec), "--out", str(tmp_path / "out")]):
        res = runner.invoke(app, cmd)
        assert res.exit_code == 2 and "credentials" in res.output, res.output
        assert "hunter2" not in res.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("client", ["sdk", "http"])
def test_base_url_with_credentials_from_the_environment_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client: str
) -> None:
    monkeypatch.setenv("FAKE_BASE_URL", CREDS)
    monkeypatch.setenv("OPENAI_BASE_URL", CREDS)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", CREDS)
    for model in ("openai-api/fake/m1", "openai/gpt-4o-mini", "anthropic/claude-haiku-4-5"):
        with pytest.raises(ModelError) as info:
            create_api(model, ModelSettings(options={"client": client}))
        assert "credentials" in str(info.value) and "hunter2" not in str(info.value), model
    spec = tmp_path / "spec.toml"
    spec.write_text(
        SPEC.format(reps=1, model="openai-api/fake/m1", extra=f'options = {{client = "{client}"}}')
    )
    out = tmp_path / "out"
    res = runner.invoke(app, ["run", str(spec), "--out", str(out)])
    assert res.exit_code == 2 and "credentials" in res.output, res.output
    assert "hunter2" not in res.output and not out.exists()


def _echo(model: str, piece: str) -> Behaviour:
    """A reply that echoes the key, as a misconfigured echo or debug proxy does: in the
    reasoning, in the cheap-talk message (sent on to the other players) and in the model
    name the server reports."""
    text = json.dumps({"reasoning": f"auth {piece}", "action": "stag", "message": f"key {piece}"})
    return Behaviour(text=text, model=f"{model}-{piece}")


@pytest.mark.parametrize("client", ["sdk", "http", "anthropic"])
def test_key_echoed_in_a_successful_reply_is_never_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client: str
) -> None:
    """Replies are redacted where they cross the model boundary, before they are cached,
    parsed, recorded or sent on to the other players; the trial still completes."""
    with FakeOpenAI() as fake:
        model, extra = _pointed(fake, client, monkeypatch)
        # the whole key, then its tail upper-cased, then URL-encoded: one per call
        fake.script = [_echo(model, KEY), _echo(model, KEY[6:].upper())]
        fake.default = _echo(model, urllib.parse.quote(KEY, safe=""))
        spec = tmp_path / "spec.toml"
        spec.write_text(SPEC.format(reps=1, model=model, extra=extra))
        out = tmp_path / "out"
        res = runner.invoke(app, ["run", str(spec), "--out", str(out), "--no-progress"])
        assert len(fake.requests) >= 2
    assert res.exit_code == 0, res.output
    assert not _leaks(res.output + (res.stderr or ""), KEY)
    (transcript,) = (out / "transcripts").glob("*.jsonl")
    text = transcript.read_text()
    assert text.count("[REDACTED]") >= 6  # reasoning, message, model name, per call
    assert '"type":"message"' in text.replace(" ", "") and "key [REDACTED]" in text
    assert list((out / "cache").rglob("*.json")), "the replies were cached"
    for p in out.rglob("*"):
        if p.is_file():
            assert not _leaks(p.read_text(errors="replace"), KEY), p
            assert not _leaks(p.read_text(errors="replace").lower(), KEY.lower()), p


async def test_a_cached_reply_holding_the_key_is_redacted_when_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cache written before replies were redacted may hold a key: a hit is redacted too."""
    from stagbench.agents.models.base import ChatMessage, GenerateConfig
    from stagbench.agents.models.pool import ModelPool

    monkeypatch.setenv("FAKE_API_KEY", KEY)
    msgs = [ChatMessage(role="user", content="go")]
    cfg = GenerateConfig(max_tokens=50, seed=3, timeout_s=5)
    with FakeOpenAI() as fake:
        monkeypatch.setenv("FAKE_BASE_URL", fake.base_url)
        fake.default = _echo("m1", KEY)
        pool = ModelPool({"openai-api": ModelSettings(max_retries=0)}, cache_dir=tmp_path)
        model = pool.get("openai-api/fake/m1")
        first = await model.generate(msgs, cfg)
        (entry,) = tmp_path.rglob("*.json")
        assert not _leaks(entry.read_text(), KEY) and not _leaks(first.output.text, KEY)
        old = json.loads(entry.read_text())
        old["text"] = f"an old reply: {KEY}"
        entry.write_text(json.dumps(old))
        hit = await model.generate(msgs, cfg)
        await pool.aclose()
        assert len(fake.requests) == 1
    assert hit.cached and hit.output.text == "an old reply: [REDACTED]"
