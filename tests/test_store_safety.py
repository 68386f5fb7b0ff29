"""No silent data loss and no paying twice: a user's folder is never taken over, two runs
never share one folder, workers die with their parent, tampered transcripts are neither
counted as done nor analysed, and every command fails with a message and an exit code."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from stagbench.cli import app
from stagbench.records import read_events
from stagbench.runs.store import MAX_CHECKED_LOGS, RunStore

from fake_openai import FakeOpenAI
from helpers import fifo_watch

runner = CliRunner()
GOLDEN = Path(__file__).parent / "golden"
Events = list[dict[str, Any]]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-P", "-m", "stagbench.cli", *args]


# -- the results folder ---------------------------------------------------------------
def test_a_users_folder_is_never_taken_over(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    (folder / "transcripts").mkdir(parents=True)
    files = {
        folder / "notes.txt": "my notes",
        folder / "data.jsonl": '{"not": "a transcript"}\n',
        folder / "transcripts" / "interview.jsonl": '{"speaker": "me"}\n',
    }
    for p, text in files.items():
        p.write_text(text)
    res = runner.invoke(app, ["run", str(GOLDEN / "golden.toml"), "--out", str(folder)])
    assert res.exit_code == 2, res.output
    assert "not a stagbench results folder" in res.output and "notes.txt" in res.output
    src = tmp_path / "src"
    assert (
        runner.invoke(app, ["run", str(GOLDEN / "golden.toml"), "--out", str(src)]).exit_code == 0
    )
    merged = runner.invoke(app, ["merge", str(folder), str(src)])
    assert merged.exit_code == 2 and "not a stagbench results folder" in merged.output
    assert {p: p.read_text() for p in files} == files
    assert sorted(p.name for p in folder.rglob("*")) == sorted(
        ["notes.txt", "data.jsonl", "transcripts", "interview.jsonl"]
    )


def test_empty_and_half_created_folders_are_used(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    res = runner.invoke(app, ["run", str(GOLDEN / "golden.toml"), "--out", str(empty)])
    assert res.exit_code == 0, res.output
    # A run killed while creating its folder left these and no manifest: still ours.
    half = tmp_path / "half"
    (half / "transcripts").mkdir(parents=True)
    (half / "failures").mkdir()
    (half / "spec.toml").write_text((GOLDEN / "golden.toml").read_text())
    res = runner.invoke(app, ["run", str(GOLDEN / "golden.toml"), "--out", str(half)])
    assert res.exit_code == 0, res.output
    assert len(RunStore(half).transcript_paths()) == 4


def test_a_folder_written_by_an_older_stagbench_resumes(tmp_path: Path) -> None:
    """A newer stagbench knows more spec fields, so the same spec hashes differently: the
    folder's own spec.toml, read again, says whether it is the same design."""
    out = tmp_path / "run"
    spec = GOLDEN / "golden.toml"
    assert runner.invoke(app, ["run", str(spec), "--out", str(out)]).exit_code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["spec_hash"] = "0123456789abcdef"  # what an older field set hashed to
    (out / "manifest.json").write_text(json.dumps(manifest))
    before = {p.name: p.stat().st_mtime_ns for p in RunStore(out).transcript_paths()}
    res = runner.invoke(app, ["run", str(spec), "--out", str(out)])
    assert res.exit_code == 0, res.output
    after = {p.name: p.stat().st_mtime_ns for p in RunStore(out).transcript_paths()}
    assert after == before  # nothing ran again
    other = tmp_path / "other.toml"
    other.write_text(spec.read_text().replace("seed = ", "seed = 1", 1))
    res = runner.invoke(app, ["run", str(other), "--out", str(out)])
    assert res.exit_code != 0 and "another spec" in res.output


SLOW = """
name = "slow"
seed = 3
repetitions = 30
[agents]
max_reasks = 0
[factors]
models = ["mock/random"]
[model_settings.mock]
options = {{latency_s = {latency}}}
"""


def _wait_for(pred: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.01)
    raise AssertionError("timed out")


def _count(out: Path) -> int:
    d = out / "transcripts"
    return sum(1 for _ in d.glob("*.jsonl")) if d.exists() else 0


@pytest.mark.parametrize("first_workers", [1, 2])
def test_a_second_run_on_the_same_folder_is_refused(tmp_path: Path, first_workers: int) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(SLOW.format(latency=0.1))
    out = tmp_path / "out"
    args = ["run", str(spec), "--out", str(out), "--no-progress", "--no-cache"]
    first = subprocess.Popen(
        _cli(*args, "--concurrency", "2", "--workers", str(first_workers)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for(lambda: _count(out) >= 1)
        for extra in ([], ["--workers", "2"], ["--shard", "0/2"]):
            second = subprocess.run(_cli(*args, *extra), capture_output=True, text=True)
            assert second.returncode == 2, second.stdout + second.stderr
            assert "another stagbench run" in second.stderr
        assert first.poll() is None, "the first run was still going"
    finally:
        output = first.communicate(timeout=120)[0].decode()
    assert first.returncode == 0, output
    calls = 0
    for p in RunStore(out).transcript_paths():
        calls += sum(1 for e in read_events(p) if e["type"] == "model_call")
    assert _count(out) == 30 and calls == 30 * 4 * 5 * 2  # every call paid once


def _pids_running(needle: str) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (d / "stat").read_text().split(") ", 1)[1][0]
        except OSError:
            continue
        if needle in cmd and state != "Z":
            pids.append(int(d.name))
    return pids


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_workers_stop_when_their_parent_is_killed(tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(SLOW.format(latency=0.2))
    out = tmp_path / "orphans-out"
    parent = subprocess.Popen(
        _cli("run", str(spec), "--out", str(out), "--no-progress", "--no-cache", "--workers", "2",
             "--concurrency", "2"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    _wait_for(lambda: len(_pids_running(str(out))) >= 3)
    workers = [p for p in _pids_running(str(out)) if p != parent.pid]
    assert len(workers) == 2
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    _wait_for(lambda: not _pids_running(str(out)), timeout=15)
    left = _count(out)
    time.sleep(1.0)
    assert _count(out) == left < 30, "nothing runs on after the parent died"
    done = subprocess.run(_cli("run", str(spec), "--out", str(out), "--no-progress"),
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert _count(out) == 30


# -- tampered transcripts in run and tables -------------------------------------------
def _first(ev: Events, kind: str) -> dict[str, Any]:
    return next(e for e in ev if e["type"] == kind)


def _payoff(ev: Events) -> None:
    _first(ev, "round_end")["payoffs"][0] = 999.0


def _flip(ev: Events) -> None:
    a = _first(ev, "action")
    a["action"] = "hare" if a["action"] == "stag" else "stag"


def _totals(ev: Events) -> None:
    ev[-1]["totals"] = [3 * t for t in ev[-1]["totals"]]


def _missing(ev: Events) -> None:
    ev.remove(_first(ev, "action"))


TAMPERS = {"payoff 999": _payoff, "flipped action": _flip, "totals multiplied": _totals,
           "missing seat action": _missing}  # fmt: skip


@pytest.mark.parametrize("case", sorted(TAMPERS))
def test_tampered_transcript_is_reported_left_out_and_rerun(case: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    spec = str(GOLDEN / "golden.toml")
    assert runner.invoke(app, ["run", spec, "--out", str(out)]).exit_code == 0
    victim = RunStore(out).transcript_paths()[1]
    clean = victim.read_bytes()
    events = read_events(victim)
    TAMPERS[case](events)
    victim.write_text("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events))
    tables = runner.invoke(app, ["tables", str(out)])
    assert tables.exit_code == 0, tables.output
    assert f"not analysed (corrupt): {victim}" in tables.output
    assert "from 3 transcripts" in tables.output
    res = runner.invoke(app, ["run", spec, "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert f"quarantined and re-run: {victim.name}" in res.output and "1 trials run" in res.output
    assert victim.read_bytes() == clean


def test_files_that_cannot_be_statted_or_are_not_files_are_quarantined_on_resume(
    tmp_path: Path,
) -> None:
    """A symlink loop made the resume die with an OSError traceback; a FIFO made it block
    in open() for good, deaf to SIGTERM (redteam19b). Each is now quarantined, unopened,
    with why, and the finished trials stay done."""
    out = tmp_path / "out"
    spec = str(GOLDEN / "golden.toml")
    assert runner.invoke(app, ["run", spec, "--out", str(out)]).exit_code == 0
    finished = {p.name: p.read_bytes() for p in RunStore(out).transcript_paths()}
    folder = out / "transcripts"
    (folder / "loop.jsonl").symlink_to("loop.jsonl")
    (folder / "dangling.jsonl").symlink_to(tmp_path / "nowhere.jsonl")
    (folder / "dir.jsonl").mkdir()
    with fifo_watch(folder / "fifo.jsonl") as opened:
        res = runner.invoke(app, ["run", spec, "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert not opened  # never opened: a FIFO blocks its reader
    assert "0 trials run, 4 already done" in res.output, res.output
    text = " ".join(res.output.split())
    for name, why in [
        ("loop.jsonl", "Too many levels of symbolic links"),
        ("dangling.jsonl", "No such file or directory"),
        ("dir.jsonl", "is not a regular file (a folder)"),
        ("fifo.jsonl", "is not a regular file (a FIFO)"),
    ]:
        assert f"quarantined and re-run: {name}:" in text and why in text, (name, text)
        assert not os.path.lexists(folder / name)
        assert len(list((out / "quarantine").glob(f"{name}.*"))) == 1
    assert {p.name: p.read_bytes() for p in RunStore(out).transcript_paths()} == finished


def test_a_fifo_among_transcripts_is_never_opened_by_tables_or_merge(tmp_path: Path) -> None:
    out = tmp_path / "out"
    spec = str(GOLDEN / "golden.toml")
    assert runner.invoke(app, ["run", spec, "--out", str(out)]).exit_code == 0
    with fifo_watch(out / "transcripts" / "fifo.jsonl") as opened:
        tables = runner.invoke(app, ["tables", str(out)])
        merged = runner.invoke(app, ["merge", str(tmp_path / "merged"), str(out)])
        listed = RunStore(out).transcript_paths()
    assert not opened
    assert tables.exit_code == 0 and "from 4 transcripts" in tables.output, tables.output
    flat = " ".join(tables.output.split())  # listed as not analysed, with why
    assert "fifo.jsonl" in flat and "not a regular file" in flat, tables.output
    assert merged.exit_code == 0, merged.output
    assert "fifo.jsonl" in merged.output and "not a regular file (a FIFO)" in merged.output
    assert len(listed) == 4 and all(p.name != "fifo.jsonl" for p in listed)


# -- exit codes and messages ------------------------------------------------------------
def test_run_with_failed_trials_exits_non_zero_and_says_how_many(tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(
        """
name = "allfail"
seed = 1
repetitions = 3
[game]
rounds = 2
[factors]
models = ["fault/mock/stag"]
[model_settings.fault]
max_retries = 0
options = { fatal_rate = 1.0 }
"""
    )
    for workers in ("1", "2"):
        out = tmp_path / f"out{workers}"
        res = runner.invoke(app, ["run", str(spec), "--out", str(out), "--workers", workers])
        assert res.exit_code == 1, res.output
        assert "3 of 3 trials failed" in res.output, res.output
        assert str(out / "failures") in res.output


def test_tables_and_power_on_a_folder_without_readable_transcripts(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (empty / "transcripts").mkdir(parents=True)
    broken = tmp_path / "broken"
    (broken / "transcripts").mkdir(parents=True)
    (broken / "transcripts" / "x.jsonl").write_text('{"type":"header"\n')
    for folder in (empty, broken, tmp_path / "nowhere"):
        for cmd in (
            ["tables", str(folder)],
            ["power", "--p0", "0.5", "--p1", "0.7", "--from-run", str(folder)],
        ):
            res = runner.invoke(app, cmd)
            assert res.exit_code == 2, (cmd, res.output)
            assert "no readable transcripts" in res.output or "no transcripts" in res.output
            assert res.exception is None or isinstance(res.exception, SystemExit), cmd


def test_models_says_what_vllm_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VLLM_BASE_URL", raising=False)
    res = runner.invoke(app, ["models"])
    assert res.exit_code == 0
    line = next(x for x in res.output.splitlines() if x.lstrip("│ ").startswith("vllm "))
    assert "ready" not in line and "VLLM_BASE_URL" in line, line
    monkeypatch.setenv("VLLM_BASE_URL", "http://127.0.0.1:9/v1")  # nothing listens there
    res = runner.invoke(app, ["models"])
    line = next(x for x in res.output.splitlines() if x.lstrip("│ ").startswith("vllm "))
    assert "ready" not in line and "no server" in line, line
    with FakeOpenAI() as fake:
        monkeypatch.setenv("VLLM_BASE_URL", fake.base_url)
        res = runner.invoke(app, ["models"])
    line = next(x for x in res.output.splitlines() if x.lstrip("│ ").startswith("vllm "))
    assert "ready" in line, line


# -- finding what is done without reading every transcript again -----------------------
def _count_reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    import stagbench.runs.store as store_module

    reads: list[Path] = []
    real = store_module.read_checked

    def counted(path: Path) -> Any:
        reads.append(path)
        return real(path)

    monkeypatch.setattr(store_module, "read_checked", counted)
    return reads


def test_a_scan_reads_only_transcripts_no_log_vouches_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    spec = str(GOLDEN / "golden.toml")
    assert runner.invoke(app, ["run", spec, "--out", str(out)]).exit_code == 0
    store = RunStore(out)
    paths = store.transcript_paths()
    reads = _count_reads(monkeypatch)
    done, corrupt = store.scan()
    assert done == {p.stem for p in paths} and not corrupt and reads == []  # written here

    # The same bytes, the same size, the modification time put back: still read again,
    # since the status-change time moved; then vouched for by the scan that read it.
    victim = paths[1]
    st = victim.stat()
    events = read_events(victim)
    _flip(events)
    time.sleep(0.05)  # past the grain of the kernel's timestamps (a few ms)
    text = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events)
    assert len(text.encode()) == st.st_size
    victim.write_text(text)
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    done, corrupt = RunStore(out).scan()
    assert reads == [victim] and [name for name, _ in corrupt] == [victim.name]
    assert done == {p.stem for p in paths} - {victim.stem}

    # A log damaged by hand vouches for nothing it garbles; without any log all is read.
    reads.clear()
    garbled = next(p for p in paths if p != victim)
    for log in (out / ".checked").glob("*.log"):
        log.write_text(
            "garbage\n" + log.read_text().replace(f"{garbled.name} ", f"{garbled.name} x")
        )
    done, _ = RunStore(out).scan()
    assert reads == [garbled] and done == {p.stem for p in paths} - {victim.stem}
    reads.clear()
    shutil.rmtree(out / ".checked")
    done, _ = RunStore(out).scan()
    assert sorted(reads) == sorted(p for p in paths if p != victim)
    reads.clear()
    assert RunStore(out).scan()[0] == done and reads == []


def test_many_checked_logs_are_folded_into_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    assert (
        runner.invoke(app, ["run", str(GOLDEN / "golden.toml"), "--out", str(out)]).exit_code == 0
    )
    logs = out / ".checked"
    lines = [line for log in logs.glob("*.log") for line in log.read_text().splitlines()]
    for i in range(MAX_CHECKED_LOGS + 1):  # as many processes as that, each with its log
        (logs / f"{i}-0.log").write_text(lines[i % len(lines)] + "\n")
    reads = _count_reads(monkeypatch)
    first = RunStore(out).scan()
    assert reads == [] and len(list(logs.glob("*.log"))) == 1
    assert RunStore(out).scan() == first and reads == []
