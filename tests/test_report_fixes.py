"""Report numbers a red-team pass found wrong: duplicated comparisons, the hunt-success
label under a threshold below unanimity, a model with no valid action left out of the
per-model table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from stagbench.analysis import metrics, report, stats, tables
from stagbench.records import read_transcript
from stagbench.runs.store import RunStore

from analysis_helpers import accused_run, run_spec

ARMS = """
name = "arms"
seed = 5
repetitions = 3
[game]
rounds = 3
[factors]
models = ["scripted/tit-for-tat"]
topologies = ["complete", "ring"]
adversaries = ["none", "byzantine(count=1)", "soft(p=0.5,count=1,placement=hub)",
               "soft(p=0.5,count=1,placement=leaf)", "delayed(k=1,count=1)"]
"""


@pytest.fixture(scope="module")
def arms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = run_spec(ARMS, tmp_path_factory.mktemp("arms"))
    report.build(run, n_boot=200, sections=[report.comparisons])
    return run


def test_each_comparison_appears_once(arms: Path) -> None:
    """Arms that sort after the reference ("soft" > "none") were paired with it again and
    again (the pair loop rebound its own row), inflating the Holm family."""
    comp = pd.read_parquet(arms / "report" / "comparisons.parquet")
    keys = ["factor", "a", "b", "context"]
    assert not comp.duplicated(keys).any(), comp[comp.duplicated(keys, keep=False)][keys]
    adv = comp[comp["factor"] == "adversary"]
    for context, g in adv.groupby("context"):
        against_none = sorted(g.loc[g["a"] == "none", "b"])
        others = sorted(set(pd.concat([g["a"], g["b"]])) - {"none"})
        assert against_none == others, context  # every arm against the reference, once
        placements = g[(g["a"] != "none") & (g["b"] != "none")]
        assert len(placements) == 1  # soft at the hub against soft at a leaf
        assert {placements["a"].iloc[0].split("@")[1], placements["b"].iloc[0].split("@")[1]} == {
            "hub]",
            "leaf]",
        }
    # the family is exactly those rows: per topology 4 arms against none, 1 placement pair
    assert len(adv) == 2 * 5


SINGLE = """
name = "single"
seed = 15
repetitions = 4
[game]
rounds = 3
[agents]
max_reasks = 0
[factors]
models = [["mock/garbage", "scripted/tit-for-tat", "mock/random"]]
"""


def test_a_model_with_no_valid_action_keeps_its_row(tmp_path: Path) -> None:
    """mock/garbage never answers with an action: the per-model table shows it with no
    stag rate (n = 0) and its share of all its agent-rounds (0 stag), counted here from
    the transcripts, instead of dropping the model."""
    run = run_spec(SINGLE, tmp_path / "run", llm=True)
    report.build(run, n_boot=200, sections=[report.cooperation])
    table = pd.read_parquet(run / "report" / "cooperation_by_model.parquet")
    rows_of: dict[str, int] = {}
    valid_of: dict[str, int] = {}
    for path in RunStore(run).transcript_paths():
        t = read_transcript(path)
        model = {s.seat: s.model for s in t.header.seats}
        for e in t.events:
            if e.type == "action":
                m = model[e.seat].split("/")[-1]
                rows_of[m] = rows_of.get(m, 0) + 1
                valid_of[m] = valid_of.get(m, 0) + (e.action is not None)
    assert valid_of["garbage"] == 0 and rows_of["garbage"] > 0
    by = table.set_index("model")
    assert set(by.index) == set(rows_of)  # every model of the population has its row
    g = by.loc["garbage"]
    assert g["stag_n"] == 0 and pd.isna(g["stag_rate"]) and g["stag_ci"] == "no valid action"
    assert g["stag_all_rate"] == 0 and g["stag_all_n"] == rows_of["garbage"]
    for m in ("random", "tit-for-tat"):
        assert by.loc[m, "stag_n"] == valid_of[m]


THRESHOLD = """
name = "thr"
seed = 7
repetitions = 6
[game]
n_players = 6
rounds = 4
threshold = 4
[factors]
models = [["scripted/random(p=0.7)", "scripted/tit-for-tat", "scripted/always-stag"]]
adversaries = ["none", "byzantine(count=1)"]
"""


def test_hunt_success_is_labelled_as_what_it_counts(tmp_path: Path) -> None:
    """With a threshold of 4 of 6, coord_* is the share of trial-rounds with at least 4
    stag hunters (the hunt succeeded), which is not the share in which all 6 hunted stag:
    the caption says which, and the value is the first, counted here from round ends."""
    run = run_spec(THRESHOLD, tmp_path / "run")
    report.build(run, n_boot=200, sections=[report.cooperation])
    table = pd.read_parquet(run / "report" / "cooperation_by_cell.parquet")
    succeeded: dict[str, list[bool]] = {}
    everyone: dict[str, list[bool]] = {}
    for path in RunStore(run).transcript_paths():
        t = read_transcript(path)
        arm = "none" if t.header.trial.adversary.kind == "none" else "byzantine"
        for e in t.events:
            if e.type == "round_end":
                succeeded.setdefault(arm, []).append(e.hunt_succeeded)
                everyone.setdefault(arm, []).append(e.stag_count == 6)
    by = {
        ("none" if a == "none" else "byzantine"): r
        for a, r in zip(table["adversary"], table["coord_rate"], strict=True)
    }
    for arm, hunts in succeeded.items():
        assert by[arm] == pytest.approx(sum(hunts) / len(hunts))
    assert any(sum(everyone[a]) != sum(succeeded[a]) for a in succeeded)  # they differ here
    text = (run / "report" / "report.md").read_text()
    assert "all players hunted stag" not in text
    assert report.COORD_NOTE in text


def test_persistence_cost_is_over_agents_that_acted_after_their_trigger(tmp_path: Path) -> None:
    """mock/garbage seats have a trigger (another player hunted hare) but never act, so
    they lost nothing by persisting: they are not averaged in as zeros. Nor is a trigger
    in the last round. The mean is over agent-trials with a valid action after it."""
    run = run_spec(SINGLE, tmp_path / "run", llm=True)
    report.build(run, n_boot=200, sections=[report.payoffs])
    pay = pd.read_parquet(run / "report" / "payoffs.parquet")
    at = pd.read_parquet(run / "report" / "agent_trials.parquet")
    honest = at[at["role"] == "honest"]
    triggered = honest[honest["trigger_round"].notna()]
    assert (triggered["rounds_after"] == 0).any()  # the case at stake occurs here
    counted = triggered[triggered["rounds_after"] > 0]
    assert not counted["model"].astype(str).str.endswith("garbage").any()
    assert len(pay) == 1
    assert pay["n_triggered"].iloc[0] == len(counted)
    assert pay["persistence_cost"].iloc[0] == pytest.approx(counted["persistence_cost"].mean())


ONE_ROUND = """
name = "one-round"
seed = 4
repetitions = 3
[game]
rounds = 1
[factors]
models = [["scripted/random(p=0.5)", "scripted/always-stag"]]
adversaries = ["none", "byzantine(count=1)"]
"""


def test_a_blank_round_trend_says_why(tmp_path: Path) -> None:
    """A one-round game has no trend to test, and always-stag never changes: the table
    says so in its note rather than leaving z and p blank without a word; it also says
    how many trials the test used (those with every round played)."""
    run = run_spec(ONE_ROUND, tmp_path / "one")
    report.build(run, n_boot=100, sections=[report.cooperation])
    trend = pd.read_parquet(run / "report" / "round_trend.parquet")
    assert trend["z"].isna().all()
    assert (trend["note"] == "one round: no trend to test").all()
    steady = run_spec(ARMS.replace('"scripted/tit-for-tat"', '"scripted/always-stag"'),
                      tmp_path / "steady")  # fmt: skip
    report.build(steady, n_boot=100, sections=[report.cooperation])
    trend = pd.read_parquet(steady / "report" / "round_trend.parquet")
    assert trend["z"].isna().all()
    assert trend["note"].str.contains("no trial's rate changes").all()
    assert (trend["trials_tested"] == trend["trials"]).all()


def test_the_detection_rate_comes_with_its_interval(tmp_path: Path) -> None:
    """The lexical detection rate was a bare number: it now says over how many agent-trials
    and trials, with a trial-clustered interval (here every accuser names the betrayer:
    a rate of 1 with the Wilson interval on the number of trials), in its table per model
    and design cell."""
    accused_run(tmp_path / "run")
    report.build(tmp_path / "run", n_boot=100, sections=[report.betrayal_detection])
    text = (tmp_path / "run" / "report" / "report.md").read_text()
    line = next(x for x in text.splitlines() if "observed a betrayal" in x)
    assert "3 honest agent-trials (in 1 trials)" in line
    row = pd.read_parquet(tmp_path / "run" / "report" / "betrayal_detection.parquet").iloc[0]
    lo, hi = stats.wilson(1, 1)
    assert (row["detection_n"], row["detection_trials"], row["detected"]) == (3, 1, 3)
    assert row["detection_rate"] == 1.0
    assert (row["detection_ci_lo"], row["detection_ci_hi"]) == pytest.approx((lo, hi))


STEADY = """
name = "steady"
seed = 8
repetitions = {reps}
[game]
rounds = 5
[factors]
models = ["scripted/always-stag"]
adversaries = ["byzantine(count=1)"]
"""


@pytest.mark.parametrize("reps", [12, 64])
def test_archetype_stability_says_when_subsets_are_too_small(tmp_path: Path, reps: int) -> None:
    """Always-stag facing a Byzantine player is Cooperation-Persistent on the whole run.
    Its halves and seed cohorts of a few trials cannot carry that label even without
    noise (the rule's lower bound needs more trials), which read as "unstable" (seed
    agreement 0); now the table says so. With enough trials per subset, they agree."""
    from stagbench.analysis import archetypes

    run = run_spec(STEADY.format(reps=reps), tmp_path / "run")
    df, _ = tables.agent_rounds(run)
    at = archetypes.classify(metrics.agent_trials(df))
    stab = archetypes.stability(at, "model").iloc[0]
    assert stab["label"] == "Cooperation-Persistent"
    if reps == 12:
        assert stab["seed_agreement"] != stab["seed_agreement"]  # NaN: not testable
        assert stab["halves_agree"] is None
        assert "too few trials to test" in stab["note"]
    else:
        assert stab["seed_agreement"] == 1.0 and bool(stab["halves_agree"]) is True
        assert stab["note"] == ""


def test_a_missing_text_is_null_in_parquet_not_the_text_nan() -> None:
    """A text column's missing values (None, NaN, pd.NA: a left merge leaves NaN in an
    object column under pandas 2) are written as null, never as the text "nan" (a filter
    on ``detection_ci.notna()`` counted those rows as having an interval); other values
    as their text."""
    import numpy as np

    df = pd.DataFrame(
        {"ci": pd.Series(["[0.1, 0.2]", np.nan, None, pd.NA, 3], dtype=object), 1: [1] * 5}
    )
    out = report._parquet_safe(df)
    assert out["ci"].isna().tolist() == [False, True, True, True, False]
    assert out["ci"].dropna().tolist() == ["[0.1, 0.2]", "3"]
    assert list(out.columns) == ["ci", "1"]
