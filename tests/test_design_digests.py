"""The design check keeps the digests of trials.jsonl in the analysis cache, keyed by the
file's identity: reused while the file is unchanged, never after it changed."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from stagbench.analysis import design
from stagbench.analysis.tables import LoadReport
from stagbench.runs.spec import parse_spec
from stagbench.runs.store import RunStore

SPEC = """
name = "digests"
seed = 3
repetitions = 3
[factors]
models = ["scripted/tit-for-tat", "scripted/grim-trigger"]
topologies = ["complete", "ring"]
"""


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    spec = parse_spec(SPEC)
    RunStore(tmp_path / "run").open(spec, SPEC, spec.trials())
    return tmp_path / "run"


def _no_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: Path, raw: bytes) -> dict[str, str]:
        raise AssertionError("hashed the trials again")

    monkeypatch.setattr(design, "_digests", refuse)


def test_digests_are_kept_and_read_back_while_the_file_is_unchanged(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trials, cache = folder / "trials.jsonl", folder / design.DIGESTS
    plain = design._expected_trials(trials)
    assert plain is not None and len(plain) == 12
    assert design._expected_trials(trials, cache) == plain and cache.is_file()
    plain_file = cache.with_name("plain")
    plain_file.write_text("x")  # readable by whom the folder's other files are
    assert cache.stat().st_mode == plain_file.stat().st_mode
    assert sorted(p.name for p in cache.parent.iterdir()) == ["design-digests.json", "plain"]
    _no_hashing(monkeypatch)
    kept = design._expected_trials(trials, cache)
    assert kept == plain and list(kept) == list(plain)  # the design's order too
    # the check of a folder goes through the same cache
    assert design.check(folder, LoadReport()).expected == 12


def test_a_changed_trials_file_is_hashed_again(folder: Path) -> None:
    trials, cache = folder / "trials.jsonl", folder / design.DIGESTS
    before = design._expected_trials(trials, cache)
    assert before is not None
    # one record changed at the same size, its modification time put back
    st = trials.stat()
    text = trials.read_text()
    changed = text.replace('"rounds":5', '"rounds":6', 1)
    assert changed != text and len(changed) == len(text)
    trials.write_text(changed)
    os.utime(trials, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = design._expected_trials(trials, cache)
    assert after == design._expected_trials(trials) and after != before
    first = next(iter(before))
    assert after is not None and after[first] != before[first]


@pytest.mark.parametrize(
    "damage", [b"", b"{not json", b"[1, 2]", b'{"version": 1, "identity": "x", "digests": {}}']
)
def test_a_damaged_or_stale_cache_is_not_believed(folder: Path, damage: bytes) -> None:
    trials, cache = folder / "trials.jsonl", folder / design.DIGESTS
    want = design._expected_trials(trials)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(damage)
    assert design._expected_trials(trials, cache) == want
    assert orjson.loads(cache.read_bytes())["digests"] == want  # rewritten


def test_wrong_values_under_the_right_identity_are_not_believed(folder: Path) -> None:
    trials, cache = folder / "trials.jsonl", folder / design.DIGESTS
    want = design._expected_trials(trials, cache)
    data = orjson.loads(cache.read_bytes())
    data["digests"] = {k: 7 for k in data["digests"]}  # not digests
    cache.write_bytes(orjson.dumps(data))
    assert design._expected_trials(trials, cache) == want


def test_a_folder_where_nothing_can_be_kept_still_checks(folder: Path) -> None:
    trials = folder / "trials.jsonl"
    blocker = folder / "blocked"
    blocker.write_text("a file, not a folder")
    cache = blocker / "analysis" / "design-digests.json"
    assert design._expected_trials(trials, cache) == design._expected_trials(trials)
    assert design._expected_trials(folder / "absent.jsonl", cache) is None
