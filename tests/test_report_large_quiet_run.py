"""A run with 127 trials or more and no betrayal at all gets its report: the per-trial
betrayal counts reindexed one categorical index of trial ids by another, which pandas
refuses when their code widths differ (redteam17b, finding 1: `stagbench report` died at
127 trials of always-stag, where 126 reported)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from stagbench.analysis import metrics, tables
from stagbench.cli import app

from analysis_helpers import run_spec

QUIET = """
name = "quiet"
seed = 3
repetitions = {reps}
[game]
n_players = 3
rounds = 2
[factors]
models = ["scripted/always-stag"]
"""


@pytest.mark.parametrize("reps", [126, 130])
def test_trial_summary_counts_no_betrayal_at_any_number_of_trials(
    tmp_path: Path, reps: int
) -> None:
    run = run_spec(QUIET.format(reps=reps), tmp_path / "run")
    df, _ = tables.agent_rounds(run, workers=1)
    summary = metrics.trial_summary(df)
    assert len(summary) == reps
    assert (summary["betrayals"] == 0).all()
    assert summary["betrayals"].dtype == "int64"


def test_betrayals_are_counted_per_trial_by_id(tmp_path: Path) -> None:
    """Trials with betrayals get their own counts (from the events), the others 0."""
    spec = QUIET.format(reps=70).replace(
        "[factors]", '[factors]\nadversaries = ["none", "byzantine(count=1)"]'
    )
    run = run_spec(spec, tmp_path / "run")
    df, _ = tables.agent_rounds(run, workers=1)
    summary = metrics.trial_summary(df).set_index("trial_id")
    events = metrics.betrayal_events(df)
    want = events["trial_id"].astype(str).value_counts()
    got = summary["betrayals"]
    assert len(summary) == 140 and want.sum() > 0
    for tid, n in got.items():
        assert n == want.get(str(tid), 0)
    assert (got[summary["adversary_kind"] == "none"] == 0).all()


def test_a_large_run_without_betrayal_gets_a_whole_report(tmp_path: Path) -> None:
    run = run_spec(QUIET.format(reps=130), tmp_path / "run")
    res = CliRunner().invoke(app, ["report", str(run), "--n-boot", "100"])
    assert res.exit_code == 0, res.output
    trials = pd.read_parquet(run / "report" / "trials.parquet")
    assert len(trials) == 130 and (trials["betrayals"] == 0).all()
