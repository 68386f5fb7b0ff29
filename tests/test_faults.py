"""Reliability: injected faults, budgets, disk errors and kills lose nothing finished, record
every failure, and end in a clear stop or a finished run that resumes to the same result."""

from __future__ import annotations

import asyncio
import errno
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import stagbench.runs.store as store_mod
from stagbench.agents.models.model import usd
from stagbench.cli import app
from stagbench.records import ActionEvent, MessageEvent, ModelCallEvent, read_transcript
from stagbench.runs.store import RunStore

from fake_openai import Behaviour, FakeOpenAI

runner = CliRunner()

FAULTY = """
name = "faulty"
seed = 4
repetitions = 3
[game]
rounds = 3
[agents]
timeout_s = 0.3
max_reasks = 1
[factors]
models = ["fault/mock/random"]
topologies = ["complete", "ring"]
adversaries = ["none", "byzantine(count=1)"]
[model_settings.fault]
max_retries = {retries}
retry_backoff_s = 0.001
options = {{ {options} }}
"""


def write(tmp: Path, text: str, name: str = "spec.toml") -> Path:
    p = tmp / name
    p.write_text(text)
    return p


def decisions(out: Path) -> dict[str, list[tuple[object, ...]]]:
    res = {}
    for path in RunStore(out).transcript_paths():
        t = read_transcript(path)
        res[t.trial_id] = [
            (e.round, e.seat, e.action)
            if isinstance(e, ActionEvent)
            else (e.round, e.sender, e.text)
            for e in t.events
            if isinstance(e, ActionEvent | MessageEvent)
        ]
    return res


def test_transient_faults_are_absorbed_and_recorded(tmp_path: Path) -> None:
    options = (
        "seed = 1, error_rate = 0.15, rate_limit_rate = 0.1, burst_every = 40, burst_len = 3, "
        "timeout_rate = 0.03, hang_s = 30, garbage_rate = 0.1"
    )
    spec = write(tmp_path, FAULTY.format(retries=8, options=options))
    out = tmp_path / "out"
    res = runner.invoke(app, ["run", str(spec), "--out", str(out), "--no-cache"])
    assert res.exit_code == 0, res.output
    paths = RunStore(out).transcript_paths()
    assert len(paths) == 12
    garbage = 0
    for p in paths:
        t = read_transcript(p)
        calls = [e.call for e in t.events if isinstance(e, ModelCallEvent)]
        garbage += sum(c.raw == "<<the model rambles without any JSON at all>>" for c in calls)
        failed = [c for c in calls if not c.parse_ok]
        assert all(c.error for c in failed)  # every bad reply is recorded with its error
    assert garbage > 0


def test_fatal_faults_fail_trials_which_resume_to_the_clean_result(tmp_path: Path) -> None:
    faulty = write(tmp_path, FAULTY.format(retries=2, options="seed = 3, fatal_rate = 0.04"))
    out = tmp_path / "out"
    res = runner.invoke(app, ["run", str(faulty), "--out", str(out), "--no-cache"])
    assert res.exit_code == 1, res.output
    failures = sorted((out / "failures").iterdir())
    assert failures and "HTTP 400" in failures[0].read_text()
    finished = {p.name: p.read_bytes() for p in RunStore(out).transcript_paths()}
    assert 0 < len(finished) < 12
    # The endpoint is fixed: operational settings may change on resume, the design may not.
    fixed = write(tmp_path, FAULTY.format(retries=2, options="seed = 3"), "fixed.toml")
    res = runner.invoke(app, ["run", str(fixed), "--out", str(out), "--no-cache"])
    assert res.exit_code == 0, res.output
    assert not list((out / "failures").iterdir())
    for name, data in finished.items():  # nothing finished was touched
        assert (out / "transcripts" / name).read_bytes() == data
    clean = tmp_path / "clean"
    assert runner.invoke(app, ["run", str(fixed), "--out", str(clean), "--no-cache"]).exit_code == 0
    assert decisions(out) == decisions(clean)


def test_run_budget_stops_cleanly_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeOpenAI() as fake:
        fake.default = Behaviour(text='{"message": "stag", "reasoning": "x", "action": "stag"}')
        monkeypatch.setenv("PAID_BASE_URL", fake.base_url)
        text = """
name = "paid"
repetitions = 6
budget_usd = {budget}
[game]
rounds = 2
[factors]
models = ["openai-api/paid/m"]
[model_settings."openai-api"]
input_per_mtok = 10000
output_per_mtok = 10000
"""
        # Each call costs (11 + 7) tokens x $0.01 = $0.18; a trial makes 16 calls ($2.88).
        spec = write(tmp_path, text.format(budget=10.0))
        out = tmp_path / "out"
        res = runner.invoke(app, ["run", str(spec), "--out", str(out), "--concurrency", "1"])
        assert res.exit_code == 3, res.output
        assert "cost limit $10.00" in res.output
        # rt28: the summary's cost is the finished trials' ($8.64); the cut trial's calls
        # were paid too, and it says so
        assert "cost $8.6400" in res.output
        assert "spent $10.0800 in all: $1.4400 on calls of trials that failed" in res.output
        done = RunStore(out).transcript_paths()
        assert 0 < len(done) < 6
        spent = sum(read_transcript(p).end.cost_usd for p in done)
        assert len(done) == 3 and spent == pytest.approx(3 * 2.88)  # the 4th trial was cut
        # The budget is the run's, not each invocation's (rt26: running the same command
        # again spent it again; rt27: counting only the transcripts' $8.64 missed the cut
        # trial's calls): the run's ledger holds all 56 calls, $10.08, so nothing is left
        # and the same command stops at once, saying why, without a call.
        calls = len(fake.requests)
        assert RunStore(out).spent_before_usd() == pytest.approx(56 * 0.18)
        res = runner.invoke(app, ["run", str(spec), "--out", str(out), "--concurrency", "1"])
        assert res.exit_code == 3, res.output
        assert "its earlier invocations spent $10.08" in " ".join(res.output.split())
        assert len(fake.requests) == calls  # before: another $10, 56 calls
        assert len(RunStore(out).transcript_paths()) == 3
        more = write(tmp_path, text.format(budget=100.0), "more.toml")
        res = runner.invoke(app, ["run", str(more), "--out", str(out), "--concurrency", "1"])
        assert res.exit_code == 0, res.output
        assert len(RunStore(out).transcript_paths()) == 6


#: a paid model ($0.01 a token) with a $0.50 max_cost_usd
CAPPED = """
name = "{name}"
repetitions = {repetitions}
[factors]
models = ["openai-api/paid/m"]
[model_settings."openai-api/paid/m"]
input_per_mtok = 10000
output_per_mtok = 10000
max_cost_usd = 0.5
{extra}"""


def test_model_cost_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeOpenAI() as fake:
        monkeypatch.setenv("PAID_BASE_URL", fake.base_url)
        spec = write(tmp_path, CAPPED.format(name="capped", repetitions=3, extra=""))
        out = tmp_path / "o"
        res = runner.invoke(app, ["run", str(spec), "--out", str(out), "--concurrency", "1"])
        assert res.exit_code == 3 and "openai-api/paid/m reached its cost limit $0.50" in res.output
        # each call costs the same: the limit lets calls through until $0.50 is reached
        # (the seats' calls of a phase in flight at once may pass it), and the run's ledger
        # says what they cost on the model
        calls = len(fake.requests)
        spent = RunStore(out).ledger_by_model()["openai-api/paid/m"]
        each = spent / calls
        assert 0.5 <= spent < 0.5 + 4 * each
        assert RunStore(out).ledger_by_model() == {"openai-api/paid/m": pytest.approx(spent)}
        # The limit is the run's, not each invocation's (as budget_usd): the same command,
        # in one process or in workers, stops at once without a call, saying why.
        for more in ([], ["--workers", "2"]):
            res = runner.invoke(app, ["run", str(spec), "--out", str(out), *more])
            assert res.exit_code == 3, res.output
            assert len(fake.requests) == calls, more  # before: as many again each time
        logs = sorted(out.glob("worker-*.log"))
        said = " ".join(" ".join(log.read_text() for log in logs).split())
        assert "share of model openai-api/paid/m's cost limit $0.50" in said, said
        assert f"earlier invocations spent {usd(spent)} on it" in said
        res = runner.invoke(app, ["run", str(spec), "--out", str(out)])
        assert f"the run's earlier invocations spent {usd(spent)} on it and this one $0.00" in (
            " ".join(res.output.split())
        )
        raised = write(tmp_path, spec.read_text().replace("0.5\n", "1.0\n"), "raised.toml")
        res = runner.invoke(app, ["run", str(raised), "--out", str(out), "--concurrency", "1"])
        assert res.exit_code == 3, res.output
        least = math.ceil((1.0 - spent) / each - 1e-9)  # $1 less what was spent, in calls
        assert calls + least <= len(fake.requests) < calls + least + 4
        assert RunStore(out).ledger_by_model()["openai-api/paid/m"] >= 1.0


def test_disk_full_stops_with_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = write(
        tmp_path,
        FAULTY.format(retries=1, options="seed = 1").replace(
            "fault/mock/random", "scripted/tit-for-tat"
        ),
    )
    out = tmp_path / "out"
    real_replace = os.replace
    count = {"n": 0}

    def flaky_replace(src: str | Path, dst: str | Path) -> None:
        if "transcripts" in Path(dst).parts:
            count["n"] += 1
            if count["n"] > 5:
                raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(store_mod.os, "replace", flaky_replace)
    res = runner.invoke(app, ["run", str(spec), "--out", str(out), "--concurrency", "1"])
    assert res.exit_code == 3 and "disk full" in res.output and "resume" in res.output
    monkeypatch.setattr(store_mod.os, "replace", real_replace)
    assert len(RunStore(out).transcript_paths()) == 5
    assert not list((out / "transcripts").glob(".*.tmp"))
    res = runner.invoke(app, ["run", str(spec), "--out", str(out)])
    assert res.exit_code == 0 and "5 already done" in res.output


def test_unusable_results_folder(tmp_path: Path) -> None:
    spec = write(
        tmp_path,
        FAULTY.format(retries=1, options="").replace("fault/mock/random", "scripted/tit-for-tat"),
    )
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    res = runner.invoke(app, ["run", str(spec), "--out", str(blocker / "sub")])
    assert res.exit_code == 2 and "error" in res.output and str(blocker) in res.output


KILL = """
name = "kill"
seed = 8
repetitions = 100
[factors]
models = ["scripted/random(p=0.6)"]
topologies = ["complete", "ring"]
disclosures = ["explicit", "silent"]
adversaries = ["none", "soft(p=0.5)"]
"""


def test_sigkill_at_random_points_many_seeds(tmp_path: Path) -> None:
    spec = write(tmp_path, KILL)
    env = dict(os.environ)
    cmd = [sys.executable, "-P", "-m", "stagbench.cli", "run", str(spec), "--no-progress"]
    clean = tmp_path / "clean"
    subprocess.run([*cmd, "--out", str(clean)], env=env, check=True, capture_output=True)
    want = {p.name: p.read_bytes() for p in RunStore(clean).transcript_paths()}
    assert len(want) == 800
    rng = random.Random(2024)
    for seed in range(5):
        out = tmp_path / f"k{seed}"
        target = rng.randrange(1, 700)
        proc = subprocess.Popen(
            [*cmd, "--out", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            d = out / "transcripts"
            if d.exists() and sum(1 for _ in d.glob("*.jsonl")) >= target:
                break
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        subprocess.run([*cmd, "--out", str(out)], env=env, check=True, capture_output=True)
        got = {p.name: p.read_bytes() for p in RunStore(out).transcript_paths()}
        assert got == want, f"seed {seed}: kill after {target} transcripts"


async def test_fault_wrapper_counts_and_is_reproducible() -> None:
    from stagbench.agents.models.base import ChatMessage, GenerateConfig
    from stagbench.agents.models.providers.fault import FaultAPI
    from stagbench.agents.models.providers.mock import MockAPI
    from stagbench.errors import ModelError

    async def pattern(seed: int) -> list[str]:
        api = FaultAPI(MockAPI("stag"), {"seed": seed, "error_rate": 0.3, "garbage_rate": 0.3})
        out = []
        for _ in range(50):
            try:
                r = await api.generate([ChatMessage(role="user", content="x")], GenerateConfig())
                out.append("garbage" if "JSON" in r.text else "ok")
            except ModelError:
                out.append("error")
        return out

    a = await pattern(1)
    assert a == await pattern(1) and a != await pattern(2)
    assert {"ok", "garbage", "error"} <= set(a)
    await asyncio.sleep(0)


SLOW = """
name = "slow"
seed = 3
repetitions = 40
[agents]
max_reasks = 0
[factors]
models = ["mock/random"]
[model_settings.mock]
options = {latency_s = 0.02}
"""


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_stops_cleanly_and_resumes(tmp_path: Path, workers: int) -> None:
    """A cluster's time limit sends SIGTERM: the run stops at once with 143, the manifest
    says why, nothing half-written is left, and the same command finishes the run."""
    spec = write(tmp_path, SLOW)
    env = dict(os.environ)
    cmd = [sys.executable, "-P", "-m", "stagbench.cli", "run", str(spec), "--no-progress", "--no-cache",
           "--concurrency", "4", "--workers", str(workers)]  # fmt: skip
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [*cmd, "--out", str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        d = out / "transcripts"
        if d.exists() and sum(1 for _ in d.glob("*.jsonl")) >= 3:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 143, output
    assert time.monotonic() - t0 < 10
    assert "interrupted by SIGTERM" in output
    store = RunStore(out)
    manifest = store.read_manifest()
    assert manifest is not None and manifest.status == "incomplete"
    if workers == 1:
        assert "SIGTERM" in (manifest.stopped or "")
    assert not list((out / "transcripts").glob(".*.tmp"))
    finished = len(store.transcript_paths())
    assert 3 <= finished < 40
    done = subprocess.run([*cmd, "--out", str(out)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    clean = tmp_path / "clean"
    subprocess.run([*cmd, "--out", str(clean)], env=env, check=True, capture_output=True)
    assert decisions(out) == decisions(clean) and len(decisions(out)) == 40


def test_calls_queued_for_a_slot_are_not_made_past_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rt31: the cost limit was checked before a call waited for its concurrency slot,
    never after, so every call queued when the limit was reached was made: $1.24 against
    a $0.10 limit with one slot and 64 trials in flight. With one slot the limit now lets
    through exactly the calls that reach it."""
    with FakeOpenAI() as fake:
        monkeypatch.setenv("PAID_BASE_URL", fake.base_url)
        spec = write(
            tmp_path, CAPPED.format(name="queued", repetitions=8, extra="max_concurrency = 1\n")
        )
        out = tmp_path / "o"
        res = runner.invoke(app, ["run", str(spec), "--out", str(out), "--concurrency", "8"])
        assert res.exit_code == 3, res.output
        spent = RunStore(out).ledger_by_model()["openai-api/paid/m"]
        each = spent / len(fake.requests)
        assert len(fake.requests) == math.ceil(0.5 / each - 1e-9), (len(fake.requests), each)
