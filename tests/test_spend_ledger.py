"""The run's spend ledger (``RunStore.record_spend``, ``SpendLedger``) and what a run counts
as spent before it starts (``RunStore.spent_before_usd``): every invocation's calls, and
never less than the transcripts cost (rt26, rt27: counting only the transcripts missed the
calls of trials cut off, failed or later answered from the cache, and a big game's
trial_end line past 4,096 bytes counted nothing)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stagbench.cli import app
from stagbench.runs import store as store_module
from stagbench.runs.store import RunStore, SpendLedger, merge_stores


def _transcript(store: RunStore, name: str, cost: float, pad: int = 0) -> None:
    store.transcripts.mkdir(parents=True, exist_ok=True)
    end = {"type": "trial_end", "rounds_played": 1, "totals": [0.5] * pad, "cost_usd": cost}
    (store.transcripts / f"{name}.jsonl").write_text(
        '{"type": "header"}\n' + json.dumps(end) + "\n\n", encoding="utf-8"
    )


def test_a_trial_end_line_of_any_length_is_counted(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    _transcript(store, "a", 1.25)
    _transcript(store, "b", 2.5, pad=5000)  # a 320-player game's line: ~25 kB
    assert len((store.transcripts / "b.jsonl").read_bytes()) > 20_000
    assert store.kept_cost_usd() == pytest.approx(3.75)


def test_odd_costs_count_nothing(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    _transcript(store, "a", 1.0)
    for name, cost in (("neg", -5.0), ("inf", float("inf"))):
        _transcript(store, name, cost)
    (store.transcripts / "junk.jsonl").write_text("not json\n")
    assert store.kept_cost_usd() == pytest.approx(1.0)


def test_the_ledger_sums_every_invocation_and_bounds_the_transcripts(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    _transcript(store, "a", 1.0)
    assert store.spent_before_usd() == pytest.approx(1.0)  # no ledger yet: the transcripts
    store.record_spend("one", 3.0)  # calls of cut-off or failed trials are in it
    store.record_spend("two", 0.5)
    store.record_spend("one", 3.5)  # an invocation rewrites its own entry
    (store.spend / "bad.json").write_text('{"spent_usd": -100}')
    (store.spend / "worse.json").write_text("{")
    assert store.ledger_usd() == pytest.approx(4.0)
    assert store.spent_before_usd() == pytest.approx(4.0)
    _transcript(store, "b", 10.0)  # written by a stagbench without the ledger
    assert store.spent_before_usd() == pytest.approx(11.0)


def test_a_ledger_entry_is_written_as_spending_grows_and_at_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first spending is written at once, also on a machine up for less than
    ``every_s`` (``time.monotonic`` counts from boot: CI's fresh machine failed here)."""
    clock = [5.0]
    monkeypatch.setattr(store_module.time, "monotonic", lambda: clock[0])
    store = RunStore(tmp_path)
    spent = [0.0]
    ledger = SpendLedger(store, lambda: spent[0], every_s=3600)
    ledger.note()
    assert store.ledger_usd() == 0.0 and not store.spend.exists()  # nothing spent: no file
    spent[0] = 0.25
    ledger.note()
    assert store.ledger_usd() == pytest.approx(0.25)
    spent[0] = 0.5
    clock[0] += 3599.0
    ledger.note()  # within every_s of the last write: not yet
    assert store.ledger_usd() == pytest.approx(0.25)
    clock[0] += 1.0
    spent[0] = 0.75
    ledger.note()  # every_s after it: written
    assert store.ledger_usd() == pytest.approx(0.75)
    spent[0] = 1.0
    ledger.note(final=True)  # at the end: written at once
    assert store.ledger_usd() == pytest.approx(1.0)
    other = SpendLedger(store, lambda: 1.0, every_s=0.0)
    other.note()
    assert other.name != ledger.name and store.ledger_usd() == pytest.approx(2.0)
    assert len(list(store.spend.glob("*.json"))) == 2  # a file each: no write races another


def _shards_that_spent(tmp_path: Path, spent: list[float]) -> list[Path]:
    """A scripted spec run in ``len(spent)`` shards, each shard's ledger saying it spent
    its amount (an entry named ``run<i>``)."""
    path = tmp_path / "s.toml"
    path.write_text('name = "m"\nseed = 1\n[factors]\nmodels = ["scripted/always-stag"]\n')
    shards = []
    for i, usd in enumerate(spent):
        out = tmp_path / f"part{i}"
        shard = f"{i}/{len(spent)}"
        res = CliRunner().invoke(app, ["run", str(path), "--out", str(out), "--shard", shard])
        assert res.exit_code == 0, res.output
        RunStore(out).record_spend(f"run{i}", usd)
        shards.append(out)
    return shards


def test_merge_carries_the_shards_ledgers_once(tmp_path: Path) -> None:
    """Shards' spend joins the merged run's ledger, so its budget counts it; merging the
    same shard again rewrites its entries instead of counting them twice."""
    shards = _shards_that_spent(tmp_path, [1.5, 2.5])
    merged = tmp_path / "merged"
    merge_stores(merged, shards)
    assert RunStore(merged).ledger_usd() == pytest.approx(4.0)
    merge_stores(merged, shards)
    assert RunStore(merged).ledger_usd() == pytest.approx(4.0)


def test_spending_in_flight_is_in_the_ledger_when_the_run_is_killed(tmp_path: Path) -> None:
    """rt28: the ledger was written only as trials ended, so a run killed outright before
    any trial finished left no entry, and its resume spent the budget again (2.2x). It is
    written every half second while the run spends."""
    spec = tmp_path / "slow.toml"
    spec.write_text(
        'name = "slow"\nseed = 1\nrepetitions = 2\nbudget_usd = 100\n[game]\nrounds = 40\n'
        '[factors]\nmodels = ["mock/random"]\n[model_settings.mock]\n'
        "input_per_mtok = 1000.0\noutput_per_mtok = 1000.0\noptions = {latency_s = 0.2}\n"
    )
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-P", "-m", "stagbench", "run", str(spec), "--out", str(out),
         "--no-progress"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    store = RunStore(out)
    try:
        deadline = time.monotonic() + 60
        while store.ledger_usd() == 0.0 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert store.ledger_usd() > 0.0
    assert not store.transcript_paths()  # no trial had ended: the old ledger had nothing


def test_odd_ledger_files_are_no_entries(tmp_path: Path) -> None:
    """rt28: a FIFO in spend/ hung run and merge, deep JSON crashed run, and two huge
    entries summed to $inf."""
    store = RunStore(tmp_path)
    store.record_spend("good", 2.0)
    os.mkfifo(store.spend / "fifo.json")
    (store.spend / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (store.spend / "huge1.json").write_text('{"spent_usd": 1e308}')
    (store.spend / "huge2.json").write_text('{"spent_usd": 1e308}')
    (store.spend / "folder.json").mkdir()
    assert store.ledger_usd() == 2.0
    assert [name for name, _ in store.ledger_entries()] == ["good.json"]


def test_merging_a_moved_or_merged_folder_counts_each_entry_once(tmp_path: Path) -> None:
    """rt28: entries were named after their source's path, so a moved shard, or a merged
    folder merged with one of its shards, counted the same spending twice."""
    shards = _shards_that_spent(tmp_path, [1.0, 2.0])
    first = tmp_path / "first"
    merge_stores(first, shards)
    moved = tmp_path / "moved"
    shards[0].rename(moved)
    merge_stores(first, [moved, shards[1]])
    assert RunStore(first).ledger_usd() == pytest.approx(3.0)
    again = tmp_path / "again"
    merge_stores(again, [first, shards[1]])
    assert RunStore(again).ledger_usd() == pytest.approx(3.0)
    RunStore(moved).record_spend("run0", 1.5)  # the shard's own later write: the larger
    merge_stores(first, [moved])
    assert RunStore(first).ledger_usd() == pytest.approx(3.5)


def test_the_ledger_keeps_what_each_model_cost(tmp_path: Path) -> None:
    """Each entry holds its amounts by model (a model's max_cost_usd counts what earlier
    invocations spent on it); odd amounts count nothing, and merge carries them."""
    (source,) = _shards_that_spent(tmp_path, [0.0])  # a results folder: merge takes it
    store = RunStore(source)
    store.spend.joinpath("run0.json").unlink()
    store.record_spend("one", 1.0, {"m/x": 0.75, "m/y": 0.25})
    store.record_spend("two", 0.5, {"m/x": 0.5})
    store.spend.joinpath("old.json").write_text('{"spent_usd": 2.0}')  # before by-model amounts
    odd = {"m/x": -1, "m/y": 1e308, "m/z": "0.5", "m/w": True, "m/v": 0.125}
    store.spend.joinpath("odd.json").write_text(json.dumps({"spent_usd": 0.2, "models": odd}))
    store.spend.joinpath("flat.json").write_text('{"spent_usd": 0.1, "models": [1, 2]}')
    assert store.ledger_usd() == pytest.approx(3.8)
    assert store.ledger_by_model() == {"m/x": 1.25, "m/y": 0.25, "m/v": 0.125}
    merged = tmp_path / "merged"
    merge_stores(merged, [source])
    assert RunStore(merged).ledger_by_model() == store.ledger_by_model()
