"""Golden playthroughs (same spec and seed -> same bytes) and resume after SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from stagbench.agents.models.pool import ModelPool
from stagbench.records import ModelCallEvent, read_events, read_transcript
from stagbench.runs.orchestrator import run_trials
from stagbench.runs.replay import check
from stagbench.runs.spec import load_spec
from stagbench.runs.store import RunStore

GOLDEN = Path(__file__).parent / "golden"


def _run(spec_path: Path, out: Path) -> None:
    spec, text = load_spec(spec_path)
    trials = spec.trials()
    store = RunStore(out)
    store.open(spec, text, trials)
    summary = asyncio.run(run_trials(spec, trials, store, concurrency=4))
    assert summary.finished and summary.failed == 0


def test_golden_transcripts_byte_identical(tmp_path: Path) -> None:
    """``golden/run`` is today's run; ``golden/v2`` (the v1 files migrated) differs in the
    two trials whose three models share two honest seats, dealt then from the list's
    start (``compose.honest_models``)."""
    _run(GOLDEN / "golden.toml", tmp_path / "a")
    made = sorted((tmp_path / "a" / "transcripts").glob("*.jsonl"))
    expected = sorted((GOLDEN / "run").glob("*.jsonl"))
    assert len(expected) == 4 and [p.name for p in made] == [p.name for p in expected]
    for got, want in zip(made, expected, strict=True):
        assert got.read_bytes() == want.read_bytes(), got.name


GOLDEN_LLM = Path(__file__).parent / "golden_llm"
_LATENCY = re.compile(r'"latency_s":[0-9.e-]+')
#: provenance a v1 transcript did not record
_V2_ONLY = re.compile(r',"(finish_reason|response_model|system_fingerprint|request_id)":"[^"]*"')


def _normal(text: str, v1: bool = False) -> str:
    text = _LATENCY.sub('"latency_s":0', text)
    return _V2_ONLY.sub("", text) if v1 else text


def test_golden_llm_transcripts_identical_but_latency(tmp_path: Path) -> None:
    """Every prompt (rules, topology, history table, quoted messages, delimit fences),
    reply, parse and seed of mock-model trials, fixed byte for byte.

    ``golden_llm/run`` is today's run; ``golden_llm/v2`` (the v1 files migrated) keeps the
    replies of the earlier ``mock/random``, which reseeded a Mersenne Twister per call."""
    spec, text = load_spec(GOLDEN_LLM / "golden_llm.toml")
    trials = spec.trials()
    store = RunStore(tmp_path / "llm")
    store.open(spec, text, trials)
    pool = ModelPool(spec.model_settings, cache_dir=None)
    summary = asyncio.run(run_trials(spec, trials, store, pool=pool, concurrency=4))
    assert summary.finished and summary.failed == 0
    made = sorted(store.transcripts.glob("*.jsonl"))
    expected = sorted((GOLDEN_LLM / "run").glob("*.jsonl"))
    assert len(expected) == 8 and [p.name for p in made] == [p.name for p in expected]
    for got, want in zip(made, expected, strict=True):
        assert _normal(got.read_text()) == _normal(want.read_text()), got.name
    assert all(check(read_transcript(p)) == [] for p in expected)


def test_mock_random_hunts_by_the_parity_of_each_calls_seed() -> None:
    """``mock/random`` answers stag for an even call seed and hare for an odd one: every
    reply of the golden run follows the seed it recorded, and both choices occur."""
    seen = set()
    for path in sorted((GOLDEN_LLM / "run").glob("*.jsonl")):
        t = read_transcript(path)
        for e in t.events:
            if isinstance(e, ModelCallEvent) and e.call.model == "mock/random" and e.call.parsed:
                said = e.call.parsed.get("action") or e.call.parsed["message"]
                want = "hare" if e.call.seed % 2 else "stag"
                assert want in said and ({"stag", "hare"} - {want}).pop() not in said, e
                seen.add(want)
    assert seen == {"stag", "hare"}


@pytest.mark.parametrize("folder", [GOLDEN, GOLDEN_LLM])
def test_v1_transcripts_read_through_migrate_as_v2(folder: Path) -> None:
    """The v1 goldens (system prompt in every call) read into exactly the v2 records that
    today's run writes (system prompt once per seat), and still replay."""
    v1 = sorted(folder.glob("*.jsonl"))
    assert v1 and all('"version":1,' in p.read_text().split("\n", 1)[0] for p in v1)
    for path in v1:
        t = read_transcript(path)
        assert t.header.version == 2
        want = (folder / "v2" / path.name).read_text()
        assert _normal(t.to_jsonl()) == _normal(want, v1=True), path.name
        assert check(t) == [], path.name
        # the fast path (analysis) migrates the same way
        assert [orjson.loads(line) for line in t.lines()] == read_events(path)


def test_v2_stores_each_system_prompt_once_and_replays_full_prompts() -> None:
    path = sorted((GOLDEN_LLM / "v2").glob("*.jsonl"))[0]
    text = path.read_text()
    t = read_transcript(path)
    llm_seats = [s for s in t.header.seats if s.system]
    assert llm_seats and all(text.count(json.dumps(s.system)[1:40]) == 1 for s in llm_seats)
    calls = [e for e in t.events if isinstance(e, ModelCallEvent)]
    assert calls and all(c.call.messages[0].role != "system" for c in calls)
    v1 = read_transcript(GOLDEN_LLM / path.name)
    assert [t.full_messages(c) for c in calls] == [
        v1.full_messages(c) for c in v1.events if isinstance(c, ModelCallEvent)
    ]


def test_golden_transcripts_replay_check() -> None:
    for path in sorted(GOLDEN.glob("*.jsonl")) + sorted((GOLDEN / "v2").glob("*.jsonl")):
        assert check(read_transcript(path)) == []


def test_replay_check_catches_tampering(tmp_path: Path) -> None:
    path = sorted(GOLDEN.glob("*.jsonl"))[0]
    # Claim a different payoff total: the re-execution must disagree.
    lines = path.read_text().splitlines()
    data = json.loads(lines[-1])
    data["totals"][0] += 1
    lines[-1] = json.dumps(data, separators=(",", ":"))
    bad = tmp_path / path.name
    bad.write_text("\n".join(lines) + "\n")
    problems = check(read_transcript(bad))
    assert problems and "outcome differs" in problems[-1]


def test_rerun_skips_finished_trials(tmp_path: Path) -> None:
    out = tmp_path / "r"
    _run(GOLDEN / "golden.toml", out)
    first = {p.name: p.stat().st_mtime_ns for p in (out / "transcripts").glob("*.jsonl")}
    spec, text = load_spec(GOLDEN / "golden.toml")
    store = RunStore(out)
    store.open(spec, text, spec.trials())
    summary = asyncio.run(run_trials(spec, spec.trials(), store))
    assert summary.completed == 0 and summary.already_done == len(first)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "transcripts").glob("*.jsonl")} == first


BIG = """
name = "kill-me"
seed = 5
repetitions = 150
[factors]
models = ["scripted/random(p=0.7)", "scripted/tit-for-tat"]
topologies = ["complete", "ring", "star(hub=0)"]
disclosures = ["explicit", "silent"]
adversaries = ["none", "soft(p=0.5)"]
"""


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-P", "-m", "stagbench.cli", *args]


def test_sigkill_mid_run_then_resume_equals_uninterrupted(tmp_path: Path) -> None:
    spec = tmp_path / "big.toml"
    spec.write_text(BIG)
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    env = dict(os.environ)
    proc = subprocess.Popen(
        _cli("run", str(spec), "--out", str(killed), "--concurrency", "8", "--no-progress"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    tdir = killed / "transcripts"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if tdir.exists() and sum(1 for _ in tdir.glob("*.jsonl")) >= 100:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = sum(1 for _ in tdir.glob("*.jsonl"))
    assert 100 <= partial < 3600, "the kill should land mid-run"
    for args in (("--out", str(killed)), ("--out", str(clean))):
        done = subprocess.run(
            _cli("run", str(spec), *args, "--no-progress"), env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
    a = {p.name: p.read_bytes() for p in tdir.glob("*.jsonl")}
    b = {p.name: p.read_bytes() for p in (clean / "transcripts").glob("*.jsonl")}
    assert len(a) == 3600
    assert a == b
    assert not list(tdir.glob(".*.tmp"))


def test_corrupt_transcript_is_quarantined_and_rerun(tmp_path: Path) -> None:
    out = tmp_path / "c"
    _run(GOLDEN / "golden.toml", out)
    victim = sorted((out / "transcripts").glob("*.jsonl"))[0]
    original = victim.read_bytes()
    victim.write_bytes(original[: len(original) // 2])  # truncated mid-write
    spec, text = load_spec(GOLDEN / "golden.toml")
    store = RunStore(out)
    store.open(spec, text, spec.trials())
    summary = asyncio.run(run_trials(spec, spec.trials(), store))
    assert summary.completed == 1
    assert [name for name, _ in summary.corrupt] == [victim.name]
    assert victim.read_bytes() == original
    assert len(list((out / "quarantine").iterdir())) == 1


def test_stale_temp_files_of_dead_writers_only_are_removed(tmp_path: Path) -> None:
    import subprocess as sp

    _run(GOLDEN / "golden.toml", tmp_path / "r")
    tdir = tmp_path / "r" / "transcripts"
    dead = sp.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tdir / f".abc.jsonl.{dead.pid}.tmp"
    live = tdir / f".def.jsonl.{os.getppid()}.tmp"  # a running process: a worker mid-write
    stale.write_text("half")
    live.write_text("half")
    spec, text = load_spec(GOLDEN / "golden.toml")
    RunStore(tmp_path / "r").open(spec, text, spec.trials())
    assert not stale.exists() and live.exists()
