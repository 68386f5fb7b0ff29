"""``merge`` takes only the destination's design: a transcript of another spec, one filed
under another trial's name, or one whose trial record differs from the design's is listed
and left out; two differing copies of one trial are a conflict (the first kept, both
named); the manifest counts only the design's trials present (rt27 finding 5)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from typer.testing import CliRunner

from stagbench.cli import app
from stagbench.runs.store import RunStore, file_identity, merge_stores, read_checked

runner = CliRunner()
SPEC = """
name = "mergedesign"
seed = 3
repetitions = 4
[game]
n_players = 3
rounds = 2
[factors]
models = ["scripted/random(p=0.6)", "scripted/tit-for-tat"]
"""


def _run(tmp_path: Path, name: str, text: str = SPEC, *extra: str) -> Path:
    spec = tmp_path / f"{name}.toml"
    spec.write_text(text)
    out = tmp_path / name
    res = runner.invoke(app, ["run", str(spec), "--out", str(out), *extra])
    assert res.exit_code == 0, res.output
    return out


def _ids(folder: Path) -> list[str]:
    return sorted(p.stem for p in RunStore(folder).transcript_paths())


def _rewrite(path: Path, edit: dict[str, str]) -> None:
    """Replace text in a transcript's lines (the file stays sound for the audit)."""
    text = path.read_text()
    for old, new in edit.items():
        assert old in text
        text = text.replace(old, new)
    path.write_text(text)


def _two_shards(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    a = _run(tmp_path, "shard0", SPEC, "--shard", "0/2")
    b = _run(tmp_path, "shard1", SPEC, "--shard", "1/2")
    return a, b, sorted(_ids(a) + _ids(b))


def test_a_transcript_of_another_spec_is_not_merged_and_the_count_is_honest(
    tmp_path: Path,
) -> None:
    a, b, design = _two_shards(tmp_path)
    assert len(design) == 8
    other = _run(tmp_path, "other", SPEC.replace("seed = 3", "seed = 4"))
    missing = _ids(b)[0]
    (b / "transcripts" / f"{missing}.jsonl").unlink()
    stray = RunStore(other).transcript_paths()[0]
    shutil.copy(stray, b / "transcripts" / stray.name)
    merged = tmp_path / "merged"
    res = runner.invoke(app, ["merge", str(merged), str(a), str(b)])
    assert res.exit_code == 0, res.output
    flat = " ".join(res.output.split())
    assert "7/8 trials of the spec are finished" in flat, res.output
    assert "not merged (not this spec's trial)" in flat and stray.name in flat
    assert f"trial {stray.stem} is not in the design" in flat
    assert "1 trials are still missing" in flat
    assert _ids(merged) == [t for t in design if t != missing]
    manifest = RunStore(merged).read_manifest()
    assert manifest is not None
    assert manifest.status == "incomplete" and manifest.finished_trials == 7
    # the run that finishes it counts the design's trials only: 1 run, 7 already done
    res = runner.invoke(app, ["run", str(tmp_path / "shard0.toml"), "--out", str(merged)])
    assert res.exit_code == 0, res.output
    assert "1 trials run, 7 already done" in res.output and "(8/8 finished)" in res.output
    assert _ids(merged) == design


def test_a_transcript_under_another_trials_name_is_not_merged(tmp_path: Path) -> None:
    a, b, design = _two_shards(tmp_path)
    first, second = _ids(b)[:2]
    shutil.copy(b / "transcripts" / f"{first}.jsonl", b / "transcripts" / f"{second}.jsonl")
    report = merge_stores(tmp_path / "merged", [a, b])
    assert [(Path(f).name, why) for f, why in report.foreign] == [
        (f"{second}.jsonl", f"the file holds trial {first}, not {second}")
    ]
    assert report.finished == 7 and report.total == 8 and report.copied == 7
    assert second not in _ids(tmp_path / "merged")


def test_a_transcript_whose_trial_record_differs_from_the_designs_is_not_merged(
    tmp_path: Path,
) -> None:
    a, b, _ = _two_shards(tmp_path)
    victim = b / "transcripts" / f"{_ids(b)[0]}.jsonl"
    _rewrite(victim, {'"condition":"base"': '"condition":"other"'})
    read_checked(victim)  # still a sound transcript: only the design tells
    report = merge_stores(tmp_path / "merged", [a, b])
    assert [(Path(f).name, why) for f, why in report.foreign] == [
        (victim.name, f"trial {victim.stem}'s record differs from the design's (trials.jsonl)")
    ]
    assert report.finished == 7 and victim.stem not in _ids(tmp_path / "merged")


def test_two_differing_copies_of_a_trial_are_a_conflict_and_the_first_is_kept(
    tmp_path: Path,
) -> None:
    a, b, design = _two_shards(tmp_path)
    c = tmp_path / "shard0again"
    shutil.copytree(a, c)
    (c / ".stagbench.lock").unlink(missing_ok=True)
    trial = _ids(c)[0]
    changed = c / "transcripts" / f"{trial}.jsonl"
    _rewrite(changed, {"I will hunt stag this round.": "Stag, everyone."})
    read_checked(changed)
    merged = tmp_path / "merged"
    res = runner.invoke(app, ["merge", str(merged), str(a), str(b), str(c)])
    assert res.exit_code == 1, res.output  # a script's `merge && report` stops to look
    flat = " ".join(res.output.split())
    kept = a / "transcripts" / f"{trial}.jsonl"
    assert f"conflict: trial {trial} has two differing copies: kept {kept}, left out {changed}" in (
        flat
    ), res.output
    assert "1 trials were run more than once" in flat
    # the other copies of c are identical to a's: already there, not conflicts
    assert f"({len(_ids(a)) - 1} more were copies of trials already there" in flat
    assert "8/8" in flat
    assert (merged / "transcripts" / f"{trial}.jsonl").read_bytes() == kept.read_bytes()
    # the other order keeps the other copy: the choice is the order given, nothing else
    report = merge_stores(tmp_path / "merged2", [c, b, a])
    assert report.conflicts == [(trial, str(changed), str(kept))]
    assert (tmp_path / "merged2" / "transcripts" / f"{trial}.jsonl").read_bytes() == (
        changed.read_bytes()
    )


def test_the_destinations_own_copy_is_kept_and_its_foreign_files_moved_aside(
    tmp_path: Path,
) -> None:
    a, b, design = _two_shards(tmp_path)
    merged = tmp_path / "merged"
    assert merge_stores(merged, [a]).finished == 4
    # a file of another trial's name put into the destination by hand, and a changed copy
    # of one of its own trials in a source
    own = _ids(merged)
    stray = merged / "transcripts" / f"{_ids(b)[0]}.jsonl"
    shutil.copy(merged / "transcripts" / f"{own[0]}.jsonl", stray)
    _rewrite(a / "transcripts" / f"{own[1]}.jsonl", {"I will hunt stag": "I shall hunt stag"})
    report = merge_stores(merged, [a, b])
    assert [(Path(f).name, why.split(":")[0]) for f, why in report.quarantined] == [
        (stray.name, f"the file holds trial {own[0]}, not {stray.stem}")
    ]
    assert report.conflicts == [
        (own[1], str(merged / "transcripts" / f"{own[1]}.jsonl"),
         str(a / "transcripts" / f"{own[1]}.jsonl"))
    ]  # fmt: skip
    assert report.finished == 8 == report.total and _ids(merged) == design
    manifest = json.loads((merged / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["finished_trials"] == 8
    assert len(list((merged / "quarantine").iterdir())) == 1


def test_a_transcript_copied_in_by_hand_is_not_counted_as_finished(tmp_path: Path) -> None:
    """fx27: the run's own scan checked a file's name, not that its trial is the design's:
    a transcript of another spec copied into the folder counted, and `run` said 9/8. It
    is quarantined with why, as a corrupt file is, and the count stays the design's."""
    ours = _run(tmp_path, "ours")
    theirs = _run(tmp_path, "theirs", SPEC.replace("seed = 3", "seed = 4"))
    stray = RunStore(theirs).transcript_paths()[0]
    shutil.copy(stray, RunStore(ours).transcripts / stray.name)
    spec = tmp_path / "ours.toml"
    res = runner.invoke(app, ["run", str(spec), "--out", str(ours)])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "quarantined" in text and "not this run's" in text
    assert "8/8" in text and "9/8" not in text
    assert stray.stem not in _ids(ours) and RunStore(ours).quarantine.is_dir()


def test_a_log_of_older_checks_vouches_for_nothing(tmp_path: Path) -> None:
    """rt28: a file an older build's scan had vouched for (``.checked``) skipped the
    checks added since, so a stray transcript vouched for before the upgrade still
    counted. A log of an older CHECKS_VERSION is dropped and its files checked again."""
    ours = _run(tmp_path, "ours")
    theirs = _run(tmp_path, "theirs", SPEC.replace("seed = 3", "seed = 4"))
    stray = RunStore(theirs).transcript_paths()[0]
    copy = RunStore(ours).transcripts / stray.name
    shutil.copy(stray, copy)
    old_log = ours / ".checked" / "123-456.log"  # an older build's name and line
    old_log.write_text(f"{copy.name} {file_identity(os.stat(copy))}\n")
    done, corrupt = RunStore(ours).scan()
    assert stray.stem not in done and [name for name, _ in corrupt] == [stray.name]
    assert not old_log.exists()


def test_merge_keeps_the_shards_failures_and_no_shard_of_its_own(tmp_path: Path) -> None:
    """rt42 F4: merge copied no failures/, so the shards' failed trials read "missing" in
    the merged report, and its manifest kept the first shard's shard, shard_trials and
    failed_trials; a second merge replaced merged_from."""
    a, b, design = _two_shards(tmp_path)
    failed = _ids(b)[0]
    (b / "transcripts" / f"{failed}.jsonl").unlink()
    (b / "failures").mkdir(exist_ok=True)
    (b / "failures" / f"{failed}.txt").write_text("provider exploded\n")
    (b / "failures" / "0123456789abcdef.txt").write_text("not of this design\n")
    merged = tmp_path / "merged"
    res = runner.invoke(app, ["merge", str(merged), str(a)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["merge", str(merged), str(b)])
    assert res.exit_code == 0, res.output
    flat = " ".join(res.output.split())
    assert "1 failed (why: " in flat and "still missing" not in flat, flat
    assert sorted(p.name for p in (merged / "failures").iterdir()) == [f"{failed}.txt"]
    manifest = RunStore(merged).read_manifest()
    assert manifest is not None
    assert (manifest.shard, manifest.shard_trials, manifest.failed_trials) == (None, None, 1)
    assert manifest.merged_from == [str(a), str(b)]
    from stagbench.analysis import design as design_check
    from stagbench.analysis.tables import LoadReport

    check = design_check.check(merged, LoadReport(files=0))
    assert check.failed == [(failed, "provider exploded")]
    # the trial finished in a later source: its failure record goes
    rerun = _run(tmp_path, "rerun", SPEC)
    merge_stores(merged, [rerun])
    assert not (merged / "failures" / f"{failed}.txt").exists()
    assert RunStore(merged).read_manifest().failed_trials == 0  # type: ignore[union-attr]


def test_a_shards_folder_counts_only_its_own_trials_missing(tmp_path: Path) -> None:
    """rt42 F6: a shard's folder listed every other shard's trial as missing (20 of the 27
    left out in shard 1/2, where none of its own was); it counts its own now, and says the
    rest belong to the other shards. A merged folder counts every trial again."""
    from stagbench.analysis import design as design_check
    from stagbench.analysis.tables import LoadReport

    a, b, design = _two_shards(tmp_path)
    lost = _ids(a)[0]
    (a / "transcripts" / f"{lost}.jsonl").unlink()
    load = LoadReport(files=0)
    load.read = [(str(p), p.stem, "mergedesign", "") for p in (a / "transcripts").glob("*")]
    check = design_check.check(a, load)
    assert check.missing == [lost]
    assert any(f"{len(_ids(b))} of its trials belong to the other shards" in n for n in check.notes)
    merged = tmp_path / "merged"
    merge_stores(merged, [a, b])
    assert len(design_check.check(merged, LoadReport(files=0)).missing) == len(design)
