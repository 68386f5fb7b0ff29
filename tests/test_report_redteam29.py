"""Red team rt29 findings F4, F5, F7, F8, F9 and F10: what the report's numbers are on
(the regression's intervals' scale, the round its factor rows are at), cells of only
adversaries, the archetypes' resamples, a Monte Carlo p at its floor, and labels."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import cast

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from stagbench.analysis import report, stats

from analysis_helpers import run_spec


def _report_data(df: pd.DataFrame, factors: list[str]) -> report.ReportData:
    """What ``report.regression`` reads of a ReportData: the rows, the factors, n_boot."""
    return cast(report.ReportData, SimpleNamespace(df=df, factors=factors, n_boot=50))


def _regression_table(df: pd.DataFrame, factors: list[str]) -> report.Table:
    sec = report.regression(_report_data(df, factors))
    tables = [b for b in sec.blocks if isinstance(b, report.Table)]
    assert len(tables) == 1, sec.blocks
    return tables[0]


def _two_arms(seed: int = 7, effect: float = 0.8) -> pd.DataFrame:
    """Explicit vs silent, 12 trials each of 4 agents x 5 rounds; silent ``effect`` logits
    above explicit."""
    rng = np.random.default_rng(seed)
    rows = []
    for arm in ("explicit", "silent"):
        for t in range(12):
            u = rng.normal(0, 0.3)
            for r in range(1, 6):
                eta = effect * (arm == "silent") + u
                rows += [
                    (f"{arm}{t}", r, float(s), arm, "honest", "m")
                    for s in rng.random(4) < expit(eta)
                ]
    return pd.DataFrame(
        rows, columns=["trial_id", "round", "stag", "disclosure", "role", "model_label"]
    )


# -- F5: the regression's intervals are named by their scale ---------------------------------
def _check_scales(tab: pd.DataFrame) -> None:
    assert "ci_lo" not in tab.columns and "ci_hi" not in tab.columns
    assert {"coef_lo", "coef_hi", "odds_ratio", "or_lo", "or_hi"} <= set(tab.columns)
    rows = tab.dropna(subset=["coef_lo"])
    assert len(rows)
    assert (rows["coef_lo"] <= rows["coef"]).all() and (rows["coef"] <= rows["coef_hi"]).all()
    np.testing.assert_allclose(rows["or_lo"], np.exp(rows["coef_lo"]))
    np.testing.assert_allclose(rows["or_hi"], np.exp(rows["coef_hi"]))
    # the odds ratio lies inside its own interval (the log-odds one beside it did not)
    assert (rows["or_lo"] <= rows["odds_ratio"]).all()
    assert (rows["odds_ratio"] <= rows["or_hi"]).all()


def test_regression_intervals_are_named_by_scale() -> None:
    """runs/multi printed "odds_ratio 1.679 | ci_lo 0.2437 | ci_hi 0.7927": the log-odds
    interval beside the odds ratio, unlabelled. Now coef_lo/coef_hi (log-odds) and
    or_lo/or_hi (exp of them) beside odds_ratio, and the caption says which is which."""
    table = _regression_table(_two_arms(), ["disclosure"])
    _check_scales(table.df.set_index("term"))
    assert "coef_lo-coef_hi" in table.caption and "or_lo-or_hi" in table.caption


def test_firth_table_names_its_intervals_by_scale() -> None:
    """The Firth/bootstrap table has the same columns."""
    x = np.array([[1.0, 0.0], [1.0, 1.0]])
    rng = np.random.default_rng(0)
    n = np.full((10, 2), 0.0)
    n[:5, 0], n[5:, 1] = 5, 5
    k = np.where(n > 0, rng.integers(1, 5, size=n.shape), 0).astype(float)
    table, _ = stats._firth_bootstrap(x, k, n, ["Intercept", "b"], 50, 0, 8)
    _check_scales(table)


# -- F4: a factor row at a round its level never played is marked as extrapolated -------------
def _horizons(seed: int = 31) -> pd.DataFrame:
    """The red team's horizon.toml in miniature: condition ``base`` plays 5 rounds,
    ``one`` 1 round, 20 trials each of 4 agents, no condition effect at round 1."""
    rng = np.random.default_rng(seed)
    rows = []
    for cond, rounds in (("base", 5), ("one", 1)):
        for t in range(20):
            u = rng.normal(0, 0.3)
            for r in range(1, rounds + 1):
                eta = 1.5 - 0.4 * (r - 1) + u
                rows += [
                    (f"{cond}{t}", r, float(s), cond, "honest", "m")
                    for s in rng.random(4) < expit(eta)
                ]
    return pd.DataFrame(
        rows, columns=["trial_id", "round", "stag", "condition", "role", "model_label"]
    )


def test_a_factor_row_at_a_round_its_level_never_played_is_marked() -> None:
    """Centred at round 3 (the middle of 1-5), ``C(condition)[T.one]`` was printed as the
    log-odds ratio at round 3 of a condition that played round 1 only, with no word of
    it. Now a note names the level and says its row is extrapolated, and the row's note
    column marks it; rows of levels that played round 3 are not marked."""
    df = _horizons()
    sec = report.regression(_report_data(df, ["condition"]))
    tables = [b for b in sec.blocks if isinstance(b, report.Table)]
    texts = [b for b in sec.blocks if isinstance(b, str)]
    assert len(tables) == 1, sec.blocks
    tab = tables[0].df.set_index("term")
    assert "centred at round 3" in tables[0].caption
    assert "extrapolated" in tab.loc["C(condition)[T.one]", "note"]
    assert "condition = 'one'" in tab.loc["C(condition)[T.one]", "note"]
    assert tab.loc["Intercept", "note"] == ""
    note = next(t for t in texts if "was not played by" in t)
    assert "condition = 'one' (round 1)" in note and "extrapolation" in note


def test_levels_that_played_the_centre_round_get_no_mark() -> None:
    """Every level played round 3: no note, no note column."""
    sec = report.regression(_report_data(_two_arms(), ["disclosure"]))
    table = next(b for b in sec.blocks if isinstance(b, report.Table))
    assert "note" not in table.df.columns
    assert not any("was not played by" in b for b in sec.blocks if isinstance(b, str))


def test_round_centre_names_the_reference_level_as_the_intercept() -> None:
    """A reference level (the first) that did not play the centre round marks the
    Intercept."""
    df = _horizons().replace({"condition": {"one": "a_one"}})
    at = stats.round_centre(df, "stag ~ C(condition) * round")
    assert at.centre == 3 and at.extrapolated == {"Intercept": "condition = 'a_one'"}
    assert at.outside == ["condition = 'a_one' (round 1)"]


# -- F9: a Monte Carlo p at its floor reads "p <=" ----------------------------------------------
def test_a_monte_carlo_p_at_its_floor_reads_at_most() -> None:
    """runs/arch: "Monte Carlo (500 permutations)), p = 0.002", 1/501, the smallest p the
    test can give. Now "p <= 0.002"; an exact p at its smallest stays an equality."""
    rng = np.random.default_rng(0)
    n = np.full(90, 20.0)
    rates = np.repeat([0.2, 0.5, 0.8], 30) + rng.uniform(-0.1, 0.1, 90)
    k = np.round(rates * n)
    groups = np.repeat(["a", "b", "c"], 30)
    test = stats.group_permutation_test(k, n, groups, n_perm=500, rng=0)
    assert test.method == "monte carlo" and test.p == test.p_min == 1 / 501
    assert test.text().startswith("p <= 0.002")
    assert stats.p_text(0.1, 0.1, "exact") == "p = 0.1"
    assert stats.p_text(0.03, 1 / 501, "monte carlo") == "p = 0.03"
    note = report._diff_ci_note(-0.07, 0.75, 1 / 1001, stats.p_text(1 / 1001, 1 / 1001, "x"))
    assert "p <= 0.000999" in note and "p = " not in note


# -- F7: a cell of adversaries only keeps its all-player measures -------------------------------
ALLADV = """
name = "rt29-alladv"
seed = 8
repetitions = 3
[game]
n_players = 3
rounds = 3
[factors]
models = ["scripted/tit-for-tat"]
topologies = ["complete"]
disclosures = ["explicit"]
adversaries = ["none", "byzantine(count=3)"]
"""


def test_a_cell_of_adversaries_only_keeps_its_hunts_and_efficiency(tmp_path: Path) -> None:
    """specs/alladv.toml: the byzantine(count=3) arm of a 3-player game has no honest seat.
    It vanished from cooperation_by_cell and payoffs (its hunt success, 0 of 9, and its
    efficiency, 0.3, never shown), and Comparisons blamed parse failures. Now its rows are
    there with the all-player columns, the honest ones empty with n 0, and the note says
    there are no honest seats."""
    data = report.prepare(run_spec(ALLADV, tmp_path), n_boot=100)
    arm = "byzantine[3@random]"
    coop = _table(report.cooperation(data), "cooperation_by_cell").set_index("adversary")
    assert set(coop.index) == {"none", arm}
    row = coop.loc[arm]
    assert row["stag_n"] == 0 and row["stag_trials"] == 0 and np.isnan(row["stag_rate"])
    assert row["stag_ci"] == report.NO_HONEST_SEATS
    assert row["coord_rate"] == 0 and row["coord_n"] == 9 and row["coord_trials"] == 3
    assert coop.loc["none", "stag_n"] == 27
    per_round = _table(report.cooperation(data), "cooperation_by_round")
    assert (per_round["adversary"] == arm).sum() == 3
    pay = _table(report.payoffs(data), "payoffs").set_index("adversary")
    assert pay.loc[arm, "n_honest"] == 0 and np.isnan(pay.loc[arm, "honest_payoff"])
    assert pay.loc[arm, "efficiency"] == pytest.approx(0.3) and pay.loc[arm, "n_all"] == 27
    assert pay.loc[arm, "trials"] == 3
    texts = [b for b in report.comparisons(data).blocks if isinstance(b, str)]
    assert any(f"no honest seats in {arm}" in t for t in texts), texts
    assert not any("parse-failure" in t for t in texts), texts


def _table(sec: report.Section, name: str) -> pd.DataFrame:
    return next(b.df for b in sec.blocks if isinstance(b, report.Table) and b.name == name)


# -- F8: --n-boot refuses too few resamples; the caption gives their number --------------------
@pytest.mark.parametrize("value", ["-5", "0", "1", "99"])
def test_report_refuses_too_few_resamples(tmp_path: Path, value: str) -> None:
    """``--n-boot -5`` printed confidence -0.0 for every label, ``--n-boot 1`` 1.0 from one
    resample. Now fewer than 100 are refused before anything is read or written."""
    from typer.testing import CliRunner

    from stagbench.cli import MIN_N_BOOT, app

    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["report", str(tmp_path), "--n-boot", value, "--out", str(out)])
    assert res.exit_code == 2, res.output
    said = " ".join(res.output.replace("│", " ").split())
    assert f"'--n-boot': Input should be greater than or equal to {MIN_N_BOOT}" in said
    assert not out.exists()


def test_n_boot_help_and_the_archetype_caption_say_what_it_sets(tmp_path: Path) -> None:
    """The help said "bootstrap resamples (trial-clustered intervals, label confidence)",
    though intervals are no longer bootstrapped; the caption never gave the number."""
    from typer.testing import CliRunner

    from stagbench.cli import app

    res = CliRunner().invoke(app, ["report", "--help"], env={"COLUMNS": "200"})
    assert "trial-clustered intervals" not in res.output
    assert "archetype label" in res.output and "not bootstrapped" in res.output
    data = report.prepare(run_spec(ALLADV, tmp_path), n_boot=250)
    caption = _table_block(report.archetype_section(data), "archetypes").caption
    assert "share of 250 trial bootstrap resamples" in caption


def _table_block(sec: report.Section, name: str) -> report.Table:
    return next(b for b in sec.blocks if isinstance(b, report.Table) and b.name == name)


# -- F10: one name per interval, n/a for no value, labels that keep parameters ----------------
def test_one_trial_interval_has_one_name_in_every_table() -> None:
    """runs/edge: an arm of one trial at rate 1 was "Wilson on trials (no variation)" in
    the cooperation table and "Wilson on trials (one trial)" in diff_ci_method, for the
    same numbers."""
    k, n = np.array([3.0]), np.array([3.0])
    lo, hi, how = stats.cluster_rate_ci(k, n)
    table = stats.rate_table_counts(pd.DataFrame({"arm": ["a"], "k": k, "n": n}), ["arm"])
    assert how == table.loc[0, "ci"] == stats.ONE_TRIAL == "Wilson on trials (one trial)"
    assert (lo, hi) == stats.wilson_rate(1.0, 1)
    _, _, method = stats.difference_ci(k, n, np.array([0.0, 1.0]), np.array([3.0, 3.0]))
    assert f"arm a ({how})" in method
    # several trials all at 1: still "no variation"
    assert stats.cluster_rate_ci(np.array([3.0, 3.0]), np.array([3.0, 3.0]))[2] == (
        "Wilson on trials (no variation)"
    )


def test_a_missing_value_prints_as_n_a() -> None:
    """The stability table printed ``None`` for halves_agree in report.md."""
    df = pd.DataFrame({"label": ["x", "y"], "halves_agree": [None, True]})
    md = report._md_table(df)
    assert "None" not in md and "| x | n/a |" in md and "| y | True |" in md
    assert "None" not in report._html_table(df)


LABELS = [
    "scripted/generous-tit-for-tat(g=0.1)",
    "scripted/generous-tit-for-tat(g=0.9)",
    "scripted/always-hare",
]


def test_short_labels_keep_the_parameters_that_tell_models_apart() -> None:
    """specs/labels.toml: (g=0.1) was shown as ``generous-tit-for-tat(g=…`` and (g=0.9)
    as ``generous-tit-for-tat#2``, hiding the one parameter that differs."""
    from stagbench.analysis.labels import MAX_LEN, short_names

    short = short_names(LABELS)
    assert short[LABELS[0]].endswith("(g=0.1)") and short[LABELS[1]].endswith("(g=0.9)")
    assert all("#" not in v and len(v) <= MAX_LEN for v in short.values())
    assert short[LABELS[2]] == "always-hare"
    # cut labels that would still be alike: the whole tails
    long = ["x/a-very-long-model-name-that-ends-v1", "x/a-very-long-model-name-that-ends-v2"]
    assert short_names(long) == {n: n.split("/")[1] for n in long}


def test_the_reference_population_does_not_follow_a_label_artefact() -> None:
    """The population comparisons took the first label in sort order as the reference:
    ``...#2`` sorted before ``...(g=…`` and the g=0.9 arm became the reference. Now the
    first population by its models' full names is."""
    cells = pd.DataFrame(
        {
            "population_label": ["gtft#2", "gtft(g=…"],
            "population": [LABELS[1], LABELS[0]],
            "cell": ["c2", "c1"],
        }
    )
    pairs = report._cell_pairs(cells, ["population_label"])
    assert [(a["population_label"], b["population_label"]) for _, a, b in pairs] == [
        ("gtft(g=…", "gtft#2")
    ]
