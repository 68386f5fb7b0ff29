from pathlib import Path

from typer.testing import CliRunner

from stagbench.cli import app

GOLDEN = Path(__file__).parent / "golden"
runner = CliRunner()


def test_run_prints_results_folder_and_replay(tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = runner.invoke(app, ["run", str(GOLDEN / "golden.toml"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert f"Results: {out.resolve()}" in res.output
    assert "4 trials run" in res.output
    manifest = (out / "manifest.json").read_text()
    assert '"status": "complete"' in manifest
    assert (out / "spec.toml").read_text() == (GOLDEN / "golden.toml").read_text()
    assert len((out / "trials.jsonl").read_text().splitlines()) == 4
    t = sorted((out / "transcripts").glob("*.jsonl"))[0]
    shown = runner.invoke(app, ["replay", str(t)])
    assert shown.exit_code == 0
    assert "Round 4" in shown.output and "Totals" in shown.output and "->" in shown.output
    one = runner.invoke(app, ["replay", str(t), "--round", "2"])
    assert "Round 2" in one.output and "Round 3" not in one.output
    ok = runner.invoke(app, ["replay", str(t), "--check"])
    assert ok.exit_code == 0 and "re-executes to the same outcome" in ok.output


def test_rerun_into_folder_of_another_spec_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert (
        runner.invoke(app, ["run", str(GOLDEN / "golden.toml"), "--out", str(out)]).exit_code == 0
    )
    other = tmp_path / "other.toml"
    other.write_text((GOLDEN / "golden.toml").read_text().replace("seed = 11", "seed = 12"))
    res = runner.invoke(app, ["run", str(other), "--out", str(out)])
    assert res.exit_code == 2
    assert "holds results of another spec" in res.output


def test_replay_of_broken_file(tmp_path: Path) -> None:
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"type":"header"\n')
    res = runner.invoke(app, ["replay", str(bad)])
    assert res.exit_code == 2 and "line 1 is not valid JSON" in res.output


def test_validate(tmp_path: Path) -> None:
    res = runner.invoke(app, ["validate", str(GOLDEN / "golden.toml"), "--show", "2"])
    assert res.exit_code == 0 and "4 trials" in res.output


def test_messages_keep_text_that_looks_like_an_emoji_code(tmp_path: Path) -> None:
    """A path or model string holding ``:x:`` is shown as written, not as an emoji
    (redteam19b finding 17: rich turned it into a cross mark in an error message)."""
    spec = tmp_path / "no:x:such.toml"
    res = CliRunner().invoke(app, ["validate", str(spec)])
    assert res.exit_code == 2 and ":x:" in res.output and "\u274c" not in res.output
