"""The run's spend ledger (``RunStore.record_spend``, ``SpendLedger``) and what a run counts
as spent before it starts (``RunStore.spent_before_usd``): every invocation's calls, and
never less than the transcripts cost (rt26, rt27: counting only the transcripts missed the
calls of trials cut off, failed or later answered from the cache, and a big game's
trial_end line past 4,096 bytes counted nothing)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stagbench.cli import app
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


def test_a_ledger_entry_is_written_as_spending_grows_and_at_the_end(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    spent = [0.0]
    ledger = SpendLedger(store, lambda: spent[0], every_s=3600)
    ledger.note()
    assert store.ledger_usd() == 0.0 and not store.spend.exists()  # nothing spent: no file
    spent[0] = 0.25
    ledger.note()
    assert store.ledger_usd() == pytest.approx(0.25)
    spent[0] = 0.5
    ledger.note()  # within every_s of the last write: not yet
    assert store.ledger_usd() == pytest.approx(0.25)
    ledger.note(final=True)
    assert store.ledger_usd() == pytest.approx(0.5)
    other = SpendLedger(store, lambda: 1.0, every_s=0.0)
    other.note()
    assert other.name != ledger.name and store.ledger_usd() == pytest.approx(1.5)
    assert len(list(store.spend.glob("*.json"))) == 2  # a file each: no write races another


def test_merge_carries_the_shards_ledgers_once(tmp_path: Path) -> None:
    """Shards' spend joins the merged run's ledger, so its budget counts it; merging the
    same shard again rewrites its entries instead of counting them twice."""
    spec = 'name = "m"\nseed = 1\n[factors]\nmodels = ["scripted/always-stag"]\n'
    path = tmp_path / "s.toml"
    path.write_text(spec)
    shards = []
    for i in range(2):
        out = tmp_path / f"part{i}"
        res = CliRunner().invoke(app, ["run", str(path), "--out", str(out), "--shard", f"{i}/2"])
        assert res.exit_code == 0, res.output
        RunStore(out).record_spend(f"run{i}", 1.5 + i)
        shards.append(out)
    merged = tmp_path / "merged"
    merge_stores(merged, shards)
    assert RunStore(merged).ledger_usd() == pytest.approx(4.0)
    merge_stores(merged, shards)
    assert RunStore(merged).ledger_usd() == pytest.approx(4.0)
