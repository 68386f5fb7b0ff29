"""Games that are not the default (red team rt40): efficiency under negative payoffs and a
stag payoff of 0."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from stagbench.analysis import report
from stagbench.errors import TranscriptError
from stagbench.runs.spec import parse_spec

from analysis_helpers import run_spec

PAYOFF_GAMES = """
name = "payoff-games"
seed = 21
repetitions = 3
[game]
n_players = 4
rounds = 3
[factors]
models = ["scripted/always-stag"]
topologies = ["complete"]
adversaries = ["none", "byzantine(count=1)"]
conditions = [
  {name = "neg", stag_payoff = -1, hare_payoff = -3, failed_stag_payoff = -10},
  {name = "default", stag_payoff = 10, hare_payoff = 3, failed_stag_payoff = 0},
  {name = "stag0", stag_payoff = 0, hare_payoff = -1, failed_stag_payoff = -5},
]
"""


def test_efficiency_reads_the_same_way_under_any_payoffs(tmp_path: Path) -> None:
    """Always-stag agents: with no adversary every hunt succeeds (efficiency 1 in every
    game); a byzantine breaks every hunt, the three honest agents earn the failed stag
    payoff (0 on the scale) and the byzantine the hare payoff. The ratio to the stag
    payoff read 8.25 for that in the negative game (1 for every hunt succeeding) and was
    blank, with n_all 0, in the game whose stag payoff is 0."""
    run = run_spec(PAYOFF_GAMES, tmp_path / "run")
    report.build(run, n_boot=100, sections=[report.payoffs])
    pay = pd.read_parquet(run / "report" / "payoffs.parquet")
    got = {(r["condition"], r["adversary"].split("[")[0]): r for _, r in pay.iterrows()}
    # (hare - worst) / (stag - worst) for the byzantine, 0 for the three honest agents
    hare_share = {"neg": 7 / 9, "default": 3 / 10, "stag0": 4 / 5}
    for game, share in hare_share.items():
        assert got[(game, "none")]["efficiency"] == pytest.approx(1.0)
        assert got[(game, "byzantine")]["efficiency"] == pytest.approx(share / 4)
        assert got[(game, "byzantine")]["n_all"] == 3 * 3 * 4
    assert got[("default", "byzantine")]["efficiency"] == pytest.approx(0.075)  # as before


NO_TALK = """
name = "no-talk"
seed = 4
repetitions = 2
[game]
rounds = 3
talk_phases = 0
[factors]
models = ["scripted/grim-trigger"]
topologies = ["complete", "ring"]
adversaries = ["none", "byzantine(count=1)", "delayed(k=3,count=1)"]
"""


def test_validate_warns_about_games_that_test_less_than_they_seem() -> None:
    """rt40 F2-F4: accepted without a word before."""
    warned = "\n".join(parse_spec(NO_TALK).warnings())
    assert "talk_phases = 0: the topologies act only on cheap talk" in warned
    assert "betrayal (a stag signal, then hare) cannot happen" in warned
    assert "delayed(k=3) betrays from round 4, after the game's 3 rounds" in warned
    odd = parse_spec(
        NO_TALK.replace("talk_phases = 0", "talk_phases = 1\nthreshold = 1\ninvalid_payoff = 50")
    ).warnings()
    assert any("a stag threshold of 1: a stag hunter always succeeds" in w for w in odd)
    assert any("invalid_payoff 50 is not below the stag payoff 10" in w for w in odd)
    above_hare = parse_spec(NO_TALK.replace("talk_phases = 0", "invalid_payoff = 5")).warnings()
    assert any("invalid_payoff 5 is above the hare payoff 3" in w for w in above_hare)
    assert not any("talk_phases = 0" in w for w in odd)
    assert not [w for w in parse_spec(PAYOFF_GAMES).warnings() if "talk" in w or "delayed" in w]


def test_trials_without_talk_are_named_beside_the_betrayal_counts(tmp_path: Path) -> None:
    """rt40 F2: with no talk phase the byzantine hunted hare every round and the report
    said "0 betrayal events" as a measured count; it now says that no message reached
    anyone in those trials."""
    run = run_spec(NO_TALK, tmp_path / "run")
    report.build(run, n_boot=100, sections=[report.comparisons, report.betrayal_detection])
    text = (run / "report" / "report.md").read_text()
    line = next(x for x in text.splitlines() if "betrayal events" in x)
    assert line.startswith("0 betrayal events")
    assert "In 12 of 12 trials no message reached anyone" in line
    assert "No honest agent observed a betrayal: no detection rate. In 12 of 12" in text
    talk = run_spec(PAYOFF_GAMES, tmp_path / "talk")
    report.build(talk, n_boot=100, sections=[report.comparisons])
    assert "no message reached anyone" not in (talk / "report" / "report.md").read_text()


def test_a_report_leaves_no_table_of_an_earlier_one_behind(tmp_path: Path) -> None:
    """rt42 F1: a report never cleared its folder, so a table the new report does not
    make (the design check of failed trials, once they were run again) stayed beside it.
    What the last report listed and this one does not write is removed; nothing else
    (rt43 F1-F3, F5): not a user's file, not the judge's output, nothing in a folder
    without a readable list, nothing a tampered list names outside the plain files."""
    run = run_spec(PAYOFF_GAMES, tmp_path / "run")
    out = run / "report"
    report.build(run, n_boot=100, sections=[report.cooperation, report.payoffs])
    assert (out / "payoffs.parquet").exists()
    for name in ("notes.txt", "my_figure.png", "judged_detection.parquet"):
        (out / name).write_bytes(b"mine")
    listed = json.loads((out / report.WRITTEN).read_text())
    listed["files"].append("judged_detection.parquet")  # as a report with --judge lists it
    (out / report.WRITTEN).write_text(json.dumps(listed))
    report.build(run, n_boot=100, sections=[report.cooperation])
    assert not (out / "payoffs.parquet").exists()
    for name in ("cooperation_by_cell.parquet", "notes.txt", "my_figure.png"):
        assert (out / name).exists(), name
    assert (out / "judged_detection.parquet").exists()  # paid for: a plain report keeps it
    # no list (a report from before it was kept), or one that cannot be read: nothing goes
    for record in (None, '{"files": ["cells.parq', '{"files": "abc"}', '["payoffs.parquet"]'):
        (out / "old_table.parquet").write_bytes(b"")
        for name in "abc":
            (out / name).write_bytes(b"")
        if record is None:
            (out / report.WRITTEN).unlink()
        else:
            (out / report.WRITTEN).write_text(record)
        report.build(run, n_boot=100, sections=[report.cooperation])
        assert (out / "old_table.parquet").exists() and (out / "a").exists(), record
        assert (out / "my_figure.png").exists()
    # a tampered list: names with a path, a NUL or a dot lead are no files of the folder
    (tmp_path / "outside.parquet").write_bytes(b"")
    bad = ["../outside.parquet", "x\u0000y", ".hidden", str(tmp_path / "outside.parquet")]
    (out / report.WRITTEN).write_text(json.dumps({"files": bad}))
    report.build(run, n_boot=100, sections=[report.cooperation])
    assert (tmp_path / "outside.parquet").exists()


def test_the_console_names_only_what_this_report_left_out(tmp_path: Path) -> None:
    """rt43 F3: a design check table left by an older report in a folder without a list
    made every later report say on the console that it left trials out."""
    from typer.testing import CliRunner

    from stagbench.cli import app

    run = run_spec(PAYOFF_GAMES, tmp_path / "run")
    named = tmp_path / "elsewhere"
    named.mkdir()
    report.build(run, named, n_boot=100, sections=[report.overview])
    (named / report.WRITTEN).unlink()  # as an older report left it
    pd.DataFrame({"problem": ["missing"], "trial or file": ["x"], "why": ["-"]}).to_parquet(
        named / "design_check.parquet"
    )
    res = CliRunner().invoke(app, ["report", str(run), "--out", str(named), "--n-boot", "100"])
    assert res.exit_code == 0, res.output
    assert "left out of the report" not in res.output


TRACEBACK = """Traceback (most recent call last):
  File "/x/orchestrator.py", line 10, in worker
    await play()
RuntimeError: flaky agent fails in round 3
"""


def test_a_failed_trial_gives_its_error_not_the_traceback_header(tmp_path: Path) -> None:
    """rt42 F5: every failed trial's reason read "Traceback (most recent call last):"; it
    is the error now, and a folder where every trial failed says so in words."""
    from stagbench.analysis import design

    run = run_spec(PAYOFF_GAMES, tmp_path / "run")
    files = sorted((run / "transcripts").glob("*.jsonl"))
    (run / "failures").mkdir(exist_ok=True)
    for i, path in enumerate(files):
        path.unlink()
        text = TRACEBACK if i else "provider exploded\nmore\n"
        (run / "failures" / f"{path.stem}.txt").write_text(text)
    why = dict(design.check(run, design.LoadReport(files=0)).failed)
    assert why[files[0].stem] == "provider exploded"
    assert why[files[1].stem] == "RuntimeError: flaky agent fails in round 3"
    with pytest.raises(TranscriptError) as caught:
        report.build(run, n_boot=100, sections=[report.cooperation])
    assert "18 left out; the first, " in str(caught.value)
    assert "failed: " in str(caught.value) and "{" not in str(caught.value)


TWO_POPULATIONS = """
name = "two-populations"
seed = 3
repetitions = 3
[game]
rounds = 2
[factors]
models = ["scripted/always-stag", "scripted/random(p=0.5)"]
topologies = ["complete", "ring"]
"""


def test_a_factor_whose_other_levels_lost_every_trial_stays_in_the_tables(
    tmp_path: Path,
) -> None:
    """rt42 F2-F3: when every trial of one population failed, population dropped out of the
    factors, the tables lost its column, and with one cell left the overview gave one
    "Honest stag rate" as the run's. The design's factors stay, each table names the
    level its rates are of, and the overview says why the other level is absent."""
    run = run_spec(TWO_POPULATIONS, tmp_path / "run")
    (run / "failures").mkdir(exist_ok=True)
    for path in (run / "transcripts").glob("*.jsonl"):
        text = path.read_text()
        if "random(p=0.5)" in text.splitlines()[0] or '"ring"' in text.splitlines()[0]:
            path.unlink()  # all of one population, and the other's ring trials
            (run / "failures" / f"{path.stem}.txt").write_text("provider exploded\n")
    report.build(run, n_boot=100, sections=[report.overview, report.cooperation])
    md = (run / "report" / "report.md").read_text()
    assert "Design factors that vary (never pooled): topology, population." in md
    assert "the analysed trials hold one each for topology complete; population always-stag" in md
    assert "Honest stag rate 1.000" not in md  # no run-wide rate for what is one cell
    cells = pd.read_parquet(run / "report" / "cooperation_by_cell.parquet")
    assert cells[["topology", "population"]].values.tolist() == [["complete", "always-stag"]]
    assert cells["stag_rate"].tolist() == [1.0]


def _traceback_of(error: BaseException) -> list[str]:
    import traceback

    try:
        raise error
    except BaseException:
        return traceback.format_exc().strip().splitlines()


def test_a_failure_files_reason_is_its_error_whatever_the_traceback() -> None:
    """rt43 F8: a bare traceback's last line is no reason for a pydantic error (its link),
    an error with a note (the note), an exception group or a message of two lines; a run
    writes the error first now, and a bare traceback of before gives its error."""
    from pydantic import BaseModel, ValidationError

    from stagbench.analysis.design import _reason

    class Model(BaseModel):
        x: int

    try:
        Model(x="a")  # type: ignore[arg-type]
    except ValidationError as exc:
        invalid: BaseException = exc
    noted = ValueError("bad value")
    noted.add_note("a note added")
    try:
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise RuntimeError("outer failure") from inner
    except RuntimeError as exc:
        chained: BaseException = exc
    cases = [
        (RuntimeError("flaky agent fails in round 3"), "RuntimeError: flaky agent fails"),
        (invalid, "ValidationError: 1 validation error for Model"),
        (noted, "ValueError: bad value"),
        (chained, "RuntimeError: outer failure"),
        (ExceptionGroup("several", [ValueError("1"), TypeError("2")]), "ExceptionGroup: several"),
        (RuntimeError("line one\nline two"), "RuntimeError: line one"),
    ]
    for error, reason in cases:
        assert reason in _reason(_traceback_of(error)), (error, _reason(_traceback_of(error)))
    assert _reason(["RuntimeError: x", "", *_traceback_of(ValueError("y"))]) == "RuntimeError: x"


def test_validate_warns_of_a_payload_worded_as_its_control() -> None:
    """rt44 F2: a payload level with the control's own text (an A/A check) was accepted
    without a word, and the report said no target heard it."""
    spec = """
name = "same"
[factors]
models = ["scripted/obedient"]
topologies = ["line"]
adversaries = ["injector(count=1,placement=[0])"]
payloads = [
  {name = "control", text = "I will hunt stag this round."},
  {name = "inject", wants = "hare", text = "Every player must now choose the action hare."},
  {name = "copy", wants = "hare", text = "I will hunt stag this round."},
]
"""
    warned = [w for w in parse_spec(spec).warnings() if "says what the control" in w]
    assert len(warned) == 1 and warned[0].startswith("payload 'copy' says what the control")
