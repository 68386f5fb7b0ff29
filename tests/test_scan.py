"""One cached pass over a run for every analysis view (``analysis.scan``): the views equal
what each module computes on its own, the cache is used when the bytes are the same and
never when one byte changed, and `tables` streams the full table chunk by chunk."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pandas as pd
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from stagbench.analysis import injection, metrics, scan
from stagbench.analysis.scan import TEXT_COLUMNS, cache_dir, iter_full
from stagbench.analysis.tables import agent_rounds, load_parquet
from stagbench.cli import app

from analysis_helpers import run_spec

SPEC = """
name = "scan"
seed = 5
repetitions = 6
[game]
rounds = 4
[factors]
models = ["scripted/tit-for-tat", "scripted/random(p=0.6)"]
topologies = ["ring", "complete"]
adversaries = ["none", "byzantine(count=1)"]
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_spec(SPEC, tmp_path_factory.mktemp("scan") / "run")


def _entries(run: Path) -> list[Path]:
    return sorted(p for p in cache_dir(run).iterdir() if p.is_dir())


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    a = a.reset_index(drop=True).astype({c: str for c in a.select_dtypes("category")})
    b = b.reset_index(drop=True).astype({c: str for c in b.select_dtypes("category")})
    pd.testing.assert_frame_equal(a, b[a.columns], check_dtype=False)


@pytest.mark.parametrize("workers", [1, 2])
def test_views_equal_each_module_on_its_own(
    run: Path, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scan, "CHUNK", 5)  # several chunks, so several workers' parts
    res = scan.scan(run, workers=workers, cache=False)
    full, load = agent_rounds(run, workers=1)
    assert res.load.files == load.files == 48 and not res.load.corrupt
    assert sorted(res.load.read) == sorted(load.read)
    _same(res.rounds, full.drop(columns=list(TEXT_COLUMNS)))
    own = metrics.agent_trials(full)
    got = res.agent_trials.sort_values(["trial_id", "seat"]).reset_index(drop=True)
    want = own.assign(trial_id=own["trial_id"].astype(str))
    _same(got.assign(trial_id=got["trial_id"].astype(str)), want)
    inj = injection.load(run, workers=1)
    _same(res.injection.rows, inj.rows[inj.rows["role"] == "honest"])
    _same(res.injection.trials, inj.trials)
    _same(res.injection.messages, inj.messages.drop(columns=["text"]))


def test_cache_is_used_for_the_same_bytes_and_never_for_changed_ones(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    monkeypatch.setattr(scan, "CHUNK", 10)
    first = scan.scan(copy, workers=1)
    entries = _entries(copy)
    assert len(entries) == 5  # 48 files in chunks of 10
    calls = []
    real = scan._build
    monkeypatch.setattr(scan, "_build", lambda *a: calls.append(1) or real(*a))
    again = scan.scan(copy, workers=1)
    assert calls == []  # every chunk from the cache
    _same(again.rounds, first.rounds)
    _same(again.agent_trials, first.agent_trials)
    # one payoff changed: that chunk is read again, audited, and the file left out
    # one payoff changed in place (same size) and the old modification time put back
    victim = sorted((copy / "transcripts").glob("*.jsonl"))[13]
    raw = victim.read_bytes()
    at = raw.index(b'"payoffs":[') + len(b'"payoffs":[')
    digit = raw[at : at + 1]
    changed = raw[:at] + (b"7" if digit != b"7" else b"8") + raw[at + 1 :]
    before = victim.stat()
    victim.write_bytes(changed)
    os.utime(victim, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert victim.stat().st_size == before.st_size
    assert victim.stat().st_mtime_ns == before.st_mtime_ns
    tampered = scan.scan(copy, workers=1)
    assert calls == [1]  # only the chunk holding the changed file
    assert [p for p, _ in tampered.load.corrupt] == [str(victim)]
    assert tampered.rounds["trial_id"].nunique() == 47
    assert len(_entries(copy)) == 5  # the stale entry removed


def test_tables_streams_the_full_table(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "rounds.parquet"
    res = CliRunner().invoke(app, ["tables", str(run), "--out", str(out)])
    assert res.exit_code == 0, res.output
    written = load_parquet(out)
    full, _ = agent_rounds(run, workers=1)
    assert len(written) == len(full)
    key = ["trial_id", "round", "seat"]
    a = written.astype({"trial_id": str}).sort_values(key).reset_index(drop=True)
    b = full.astype({"trial_id": str}).sort_values(key).reset_index(drop=True)
    for col in ("message", "received", "received_from", "action", "payoff"):
        assert a[col].tolist() == b[col].tolist(), col
    chunks = list(iter_full(scan.scan(run, full=True, workers=1)))
    assert sum(t.num_rows for t in chunks) == len(full)


@pytest.mark.parametrize("damage", ["garbage", "missing part", "no marker"])
def test_a_damaged_cache_entry_is_read_again_never_short(
    run: Path, tmp_path: Path, damage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    monkeypatch.setattr(scan, "CHUNK", 10)
    first = scan.scan(copy, workers=1)
    entry = _entries(copy)[2]
    if damage == "garbage":
        (entry / "rounds.parquet").write_bytes(b"not parquet")
    elif damage == "missing part":
        (entry / "rounds.parquet").unlink()
    else:
        (entry / "done.json").unlink()
    again = scan.scan(copy, workers=1)
    assert len(again.load.read) == 48
    _same(again.rounds, first.rounds)
    _same(again.agent_trials, first.agent_trials)
    assert len(scan.scan(copy, workers=1).rounds) == len(first.rounds)  # and repaired


def test_a_scan_never_loses_entries_to_another_scan(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another scan of the folder with other keys (another reader mode, files added) runs
    while this one reads: its eviction waits for no one and removes nothing in use."""
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    monkeypatch.setattr(scan, "CHUNK", 10)
    want = scan.scan(copy, workers=1)
    real = scan._gather
    raced = []

    def gather_after_another_scan(entries: list[object], name: str) -> list[pd.DataFrame]:
        if not raced:
            raced.append(1)
            scan.scan(copy, workers=1, strict=True)  # other keys: would evict ours
        return real(entries, name)  # type: ignore[arg-type]

    monkeypatch.setattr(scan, "_gather", gather_after_another_scan)
    got = scan.scan(copy, workers=1)
    assert raced and len(got.load.read) == 48
    _same(got.rounds, want.rounds)


def test_run_wide_categories_unify_across_chunks() -> None:
    """A chunk's categories fit a narrow index and a run's may not (100,000 trial ids do
    not fit 16 bits): widened, the chunks' tables still join into one, the same values."""
    parts = [
        pa.table({"trial_id": pa.array([f"t{i}-{j}" for j in range(100)]).dictionary_encode()})
        for i in range(3)
    ]
    narrow = [p.cast(pa.schema([pa.field("trial_id", pa.dictionary(pa.int8(), pa.string()))]))
              for p in parts]  # fmt: skip
    with pytest.raises(pa.ArrowInvalid):
        pa.concat_tables(narrow).unify_dictionaries()
    joined = pa.concat_tables([scan._wide_dictionaries(t) for t in narrow]).unify_dictionaries()
    assert joined.column("trial_id").cast(pa.string()).to_pylist() == [
        f"t{i}-{j}" for i in range(3) for j in range(100)
    ]


@pytest.mark.parametrize("chunk", [5, 48])
def test_views_are_the_same_cold_warm_and_without_cache(
    run: Path, tmp_path: Path, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One frame per view whatever the path: read and cached (cold), from the cache
    (warm, the chunks' Arrow tables joined) and without a cache, column types included
    (the agent-trials' categories too, where the chunks' differ); the injection views'
    repeating text as categories with sorted levels."""
    monkeypatch.setattr(scan, "CHUNK", chunk)
    copy = tmp_path / "run"
    copy.mkdir()
    (copy / "transcripts").symlink_to(run / "transcripts")  # same files: same cache keys
    cold = scan.scan(copy, workers=1)
    warm = scan.scan(copy, workers=1)
    bare = scan.scan(copy, workers=1, cache=False)
    for other in (warm, bare):
        pd.testing.assert_frame_equal(cold.rounds, other.rounds)
        pd.testing.assert_frame_equal(cold.agent_trials, other.agent_trials)  # dtypes too
        for part in ("rows", "messages", "trials"):
            a, b = getattr(cold.injection, part), getattr(other.injection, part)
            pd.testing.assert_frame_equal(a, b)
    rows = warm.injection.rows
    for col in scan.INJECTION_CATEGORIES:
        assert isinstance(rows[col].dtype, pd.CategoricalDtype), col
        assert rows[col].cat.categories.is_monotonic_increasing, col
    assert rows["trial_id"].dtype == bare.injection.rows["trial_id"].dtype


def test_keys_statted_in_the_folder_equal_those_of_whole_paths(run: Path, tmp_path: Path) -> None:
    """A chunk's key is the same whether its files are statted by full path or by name in
    their folder, a file gone meanwhile included; and it changes with any file's times."""
    import shutil

    folder = tmp_path / "transcripts"
    shutil.copytree(run / "transcripts", folder)
    files = sorted(folder.glob("*.jsonl"))
    gone = folder / "0-not-there.jsonl"
    paths = [*files[:5], gone, *files[5:9]]
    assert scan._key(paths, None, False, folder) == scan._key(paths, None, False)
    assert list(scan._signatures(paths, folder)) == [scan._signature(p) for p in paths]
    assert b"\0-" in scan._signature(gone)
    before = scan._key(paths, None, False, folder)
    st = files[2].stat()
    os.utime(files[2], ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert scan._key(paths, None, False, folder) != before


def _alike_groups(folder: Path) -> list[list[Path]]:
    groups: dict[bytes, list[Path]] = {}
    for p in sorted(folder.glob("*.jsonl")):
        found = scan._alike(p.read_bytes())
        assert found is not None  # every file of this version has a content
        groups.setdefault(found.digest, []).append(p)
    return [g for g in groups.values() if len(g) > 1]


def test_trials_played_alike_are_read_once_and_give_the_views_of_a_full_read(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trial whose header (but for its id, seed and repetition) and events are those of
    a trial read before in its chunk takes that trial's views under its own ids: every
    view equals a full read of each file. A copy whose id is of the wrong type is a
    corrupt file as without the shortcut, as is one whose header holds a lone CR, and one
    whose events differ is read in full."""
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    groups = _alike_groups(copy / "transcripts")
    assert sum(len(g) - 1 for g in groups) >= 10  # scripted tit-for-tat: many alike
    first, second = groups[0][:2]
    # the second's id a number (a malformed header), the third's payoff tampered
    raw = second.read_bytes()
    tid = orjson.loads(raw[: raw.index(b"\n")])["trial"]["trial_id"]
    second.write_bytes(raw.replace(f'"trial_id":"{tid}"'.encode(), b'"trial_id":12345', 1))
    third = next(g[1] for g in groups[1:] if g[1] != second)
    raw = third.read_bytes()
    at = raw.index(b'"payoffs":[') + len(b'"payoffs":[')
    third.write_bytes(raw[:at] + (b"7" if raw[at : at + 1] != b"7" else b"8") + raw[at + 1 :])
    # the fourth's header with a lone CR (JSON whitespace, but the reader ends a line there)
    fourth = next(g[-1] for g in groups[2:] if g[-1] not in (second, third))
    raw = fourth.read_bytes()
    fourth.write_bytes(raw.replace(b'"format":', b'\r"format":', 1))
    again = []
    real = scan._again
    monkeypatch.setattr(scan, "_again", lambda *a: again.append(1) or real(*a))
    short = scan.scan(copy, workers=1, cache=False)
    assert len(again) >= 8
    monkeypatch.setattr(scan, "_alike", lambda blob: None)
    full = scan.scan(copy, workers=1, cache=False)
    assert short.load.corrupt == full.load.corrupt
    assert {p for p, _ in full.load.corrupt} == {str(second), str(third), str(fourth)}
    assert "malformed header: trial.trial_id" in dict(full.load.corrupt)[str(second)]
    assert sorted(short.load.read) == sorted(full.load.read) and len(full.load.read) == 45
    pd.testing.assert_frame_equal(short.rounds, full.rounds)
    pd.testing.assert_frame_equal(short.agent_trials, full.agent_trials)
    for part in ("rows", "messages", "trials"):
        pd.testing.assert_frame_equal(getattr(short.injection, part), getattr(full.injection, part))
    assert first.exists()


def test_only_files_of_this_version_with_a_header_line_have_a_content() -> None:
    head = {"type": "header", "version": 2, "trial": {"trial_id": "a", "seed": 1, "repetition": 0}}
    body = b'\n{"type":"trial_end"}\n'
    found = scan._alike(orjson.dumps(head) + body)
    assert found is not None and found.header == head
    other = scan._alike(
        orjson.dumps({**head, "trial": {"trial_id": "b", "seed": 9, "repetition": 3}}) + body
    )
    assert other is not None and other.digest == found.digest and other.same(found)
    changed = scan._alike(orjson.dumps(head) + body.replace(b"end", b"End"))
    assert changed is not None and changed.digest != found.digest and not changed.same(found)
    for bad in (
        orjson.dumps({**head, "version": 1}) + body,  # migrated first: read in full
        orjson.dumps({**head, "trial": {"trial_id": "a", "repetition": 0}}) + body,  # no seed
        orjson.dumps(head),  # one line
        b"\n" + orjson.dumps(head) + body,  # a blank line first
        orjson.dumps(head).replace(b",", b",\r", 1) + body,  # a CR the reader ends a line at
        orjson.dumps(head) + body.replace(b"\n", b"\r\n"),  # CRLF
        b"[1]" + body,
    ):
        assert scan._alike(bad) is None


def test_analysis_commands_put_arrow_on_malloc_unless_told_otherwise(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`tables` and `report` take Arrow's buffers from malloc (a lower peak than mimalloc,
    which keeps freed buffers), unless ARROW_DEFAULT_MEMORY_POOL names a pool."""
    before = pa.default_memory_pool()
    try:
        for command in (["tables", str(run), "--out", str(tmp_path / "t.parquet")],
                        ["report", str(run), "--out", str(tmp_path / "r"), "--n-boot", "100"]):  # fmt: skip
            monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL", raising=False)
            pa.set_memory_pool(pa.mimalloc_memory_pool())
            assert CliRunner().invoke(app, command).exit_code == 0
            assert pa.default_memory_pool().backend_name == "system"
            monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "mimalloc")
            pa.set_memory_pool(pa.mimalloc_memory_pool())
            assert CliRunner().invoke(app, command).exit_code == 0
            assert pa.default_memory_pool().backend_name == "mimalloc"
    finally:
        pa.set_memory_pool(before)


def test_trials_whose_contents_share_a_hash_are_told_apart_by_their_bytes(
    run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With every file's content hash made the same, only files whose bytes are alike
    share views: every view equals a full read."""
    full = scan.scan(run, workers=1, cache=False)
    real, told = scan._alike, []

    def one_hash(blob: bytes) -> scan._Content | None:
        found = real(blob)
        return found._replace(digest=0) if found is not None else None

    same = scan._Content.same
    monkeypatch.setattr(scan, "_alike", one_hash)
    monkeypatch.setattr(scan._Content, "same", lambda a, b: told.append(same(a, b)) or told[-1])
    short = scan.scan(run, workers=1, cache=False)
    assert True in told and False in told  # some alike, some not, under one hash
    pd.testing.assert_frame_equal(short.rounds, full.rounds)
    pd.testing.assert_frame_equal(short.agent_trials, full.agent_trials)
    for part in ("rows", "messages", "trials"):
        pd.testing.assert_frame_equal(getattr(short.injection, part), getattr(full.injection, part))
