"""What the regression's printed numbers mean (redteam17 findings 1, 5, 6, 7 and 8): aliased
columns are dropped in the formula's order, whatever the trial counts, with the reference
cell named; the factor rows are effects at a played round (round centred); a level of 1-2
trials gets no inference; the GEE's tests use a t reference; and a stray bootstrap draw
does not give a flat Firth term an interval."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from scipy.special import expit

from stagbench.analysis import report, stats

from analysis_helpers import defence_split_rows

#: the red team's payload design: the ``none`` arm says nothing (payload ''), the injector
#: arm has payloads control and injection; true logits per cell (round r)
PAYLOAD_CELLS = {
    ("none", ""): lambda r: 0.5,
    ("injector", "control"): lambda r: 1.5,
    ("injector", "injection"): lambda r: -1.0 - 0.4 * (r - 1),
}


def _payload_trials(counts: tuple[int, int, int], seed: int = 0) -> pd.DataFrame:
    """``counts`` trials per topology of each payload cell, 4 agents x 4 rounds."""
    rng = np.random.default_rng(seed)
    rows, t = [], 0
    for (arm, payload), n in zip(PAYLOAD_CELLS, counts, strict=True):
        for topology in ("complete", "ring"):
            for _ in range(n):
                u = rng.normal(0, 0.3)
                for r in range(1, 5):
                    stag = rng.random(4) < expit(PAYLOAD_CELLS[(arm, payload)](r) + u)
                    rows += [(f"t{t}", r, float(s), arm, payload, topology) for s in stag]
                t += 1
    columns = ["trial_id", "round", "stag", "adversary_arm", "payload", "topology"]
    return pd.DataFrame(rows, columns=columns)


def test_aliased_columns_are_dropped_in_formula_order_whatever_the_trial_counts() -> None:
    """Fit A (40/40/40 trials per topology) and fit B (80/40/40, only more ``none`` trials)
    of the same design: the pivoted QR dropped the arm's columns in A and payload columns
    in B, so C(payload)[T.control] was control - none in one and control - injection in the
    other. Now both keep the same columns, the same ones as the formula's order gives, and
    the note names the reference cell they are relative to."""
    kept, notes = [], []
    for counts in ((40, 40, 40), (80, 40, 40)):
        df = _payload_trials(counts)
        formula, _ = stats.formula_terms(df)
        fit = stats.logit_model(df, formula, n_boot=50)
        assert fit.table is not None, fit.notes
        kept.append(list(fit.table.index))
        notes.append(next(n for n in fit.notes if "aliased" in n))
    assert kept[0] == kept[1], kept
    # the arm (earlier in the formula) is kept; payload's last level and its round slope go
    assert "C(adversary_arm)[T.none]" in kept[0] and "C(payload)[T.control]" in kept[0]
    assert "C(payload)[T.injection]" not in kept[0]
    assert "C(payload)[T.injection]:round" not in kept[0]
    assert notes[0] == notes[1]
    assert "adversary_arm = 'injector'" in notes[0] and "payload = 'injection'" in notes[0]


def test_the_reference_cell_is_named_with_or_without_aliasing() -> None:
    """Each factor row compares its level with the reference cell: every fit with a table
    names that cell (``ModelFit.reference``), not only fits that dropped aliased columns;
    a factor whose first level is gone from the data is referenced to the level left."""
    df = _payload_trials((20, 20, 20))
    aliased = stats.logit_model(df, stats.formula_terms(df)[0], n_boot=50)
    assert aliased.reference == "adversary_arm = 'injector', topology = 'complete', " + (
        "payload = 'injection'"
    )
    full = df[df["adversary_arm"] == "injector"]
    fit = stats.logit_model(full, "stag ~ C(payload) * round + C(topology) * round")
    assert not any("aliased" in n for n in fit.notes) and fit.table is not None
    assert fit.reference == "payload = 'control', topology = 'complete'"
    later = full[full["topology"] != "complete"]
    fit = stats.logit_model(later, "stag ~ C(payload) * round + C(topology) * round")
    assert fit.reference.endswith("topology = 'ring'"), fit.reference


def test_independent_columns_keep_earlier_columns() -> None:
    """A column that is a combination of earlier ones goes, even when it has the larger
    norm; the order of the rest is kept."""
    a = np.array([1.0, 1, 1, 1, 1, 1])
    b = np.array([1.0, 0, 0, 0, 0, 0])  # a rare level: small norm
    c = a - b  # aliased with a and b, larger norm
    d = np.array([0.0, 1, 2, 3, 4, 5])
    assert stats._independent_columns(np.column_stack([a, b, c, d])) == [0, 1, 3]
    assert stats._independent_columns(np.column_stack([a, c, b, d])) == [0, 1, 3]


def _report_data(df: pd.DataFrame, factors: list[str]) -> report.ReportData:
    """What ``report.regression`` reads of a ReportData: the rows, the factors, n_boot."""
    return cast(report.ReportData, SimpleNamespace(df=df, factors=factors, n_boot=50))


def test_factor_rows_are_effects_at_a_played_round() -> None:
    """A silent arm whose advantage grows over the rounds, 0.3 x round logits (+0.3 to
    +1.5 over rounds 1-5, +0.9 at round 3): uncentred, the factor row was the effect at
    round 0, about 0, as if there were none. Now round is centred at the middle round, the
    row estimates the effect there and the caption says at which round."""
    rng = np.random.default_rng(7)
    rows = []
    for arm in ("explicit", "silent"):
        for t in range(12):
            u = rng.normal(0, 0.3)
            for r in range(1, 6):
                eta = 0.3 * r * (arm == "silent") + u
                rows += [
                    (f"{arm}{t}", r, float(s), arm, "honest", "m")
                    for s in rng.random(4) < expit(eta)
                ]
    df = pd.DataFrame(
        rows, columns=["trial_id", "round", "stag", "disclosure", "role", "model_label"]
    )
    sec = report.regression(_report_data(df, ["disclosure"]))
    tables = [b for b in sec.blocks if isinstance(b, report.Table)]
    assert len(tables) == 1, sec.blocks
    row = tables[0].df.set_index("term").loc["C(disclosure)[T.silent]"]
    assert 0.5 < row["coef"] < 1.4 and row["p"] < 0.05, row
    assert "centred at round 3" in tables[0].caption and "(1-5)" in tables[0].caption
    # a full design (nothing aliased) names its reference level too
    assert "Reference cell (the Intercept's" in tables[0].caption
    assert "each factor row compares its level with it) disclosure = 'explicit': stag ~" in (
        tables[0].caption
    )
    slope = tables[0].df.set_index("term").loc["C(disclosure)[T.silent]:round", "coef"]
    assert 0.1 < slope < 0.5


def _small_level(rng: np.random.Generator, m: int) -> pd.DataFrame:
    """The red team's null design: arms none and byzantine with 6 trials each and a third
    arm ``soft`` with ``m``; 4 agents x 5 rounds, trial effect sd 0.8, no arm effect."""
    rows = []
    for arm, n in (("byzantine", 6), ("none", 6), ("soft", m)):
        for t in range(n):
            p = expit(rng.normal(0, 0.8))
            for r in range(1, 6):
                rows += [(f"{arm}{t}", r - 3, float(s), arm) for s in rng.random(4) < p]
    return pd.DataFrame(rows, columns=["trial_id", "round", "stag", "adversary_arm"])


@pytest.mark.parametrize("m", [1, 2])
def test_a_level_of_one_or_two_trials_gets_no_inference(m: int) -> None:
    """At 1 trial the soft arm's se was 1e3-1e8; at 2 its p < 0.05 in 11.5% of null data,
    printed without a note. Now a note names the level and its coefficients have no se, p
    or interval; the others keep theirs."""
    df = _small_level(np.random.default_rng(m), m)
    fit = stats.logit_model(df, "stag ~ C(adversary_arm) * round", n_boot=50)
    assert fit.table is not None, fit.notes
    note = next(n for n in fit.notes if "fewer than 3 trials" in n)
    assert f"adversary_arm = 'soft' ({m} trial" in note
    soft = ["C(adversary_arm)[T.soft]", "C(adversary_arm)[T.soft]:round"]
    assert all(s in note for s in soft)
    assert (
        fit.table.loc[soft, ["se", "p", "coef_lo", "coef_hi", "or_lo", "or_hi"]].isna().all().all()
    )
    assert fit.table.loc[soft, "coef"].notna().all()
    rest = fit.table.drop(index=soft)
    assert rest[["se", "p", "coef_lo", "coef_hi", "or_lo", "or_hi"]].notna().all().all()


def test_a_thin_reference_level_takes_the_contrasts_against_it() -> None:
    """When the 1-trial level is the reference, every contrast of that factor, and the
    Intercept and round (that level's), need its trial: none of them gets inference."""
    df = _small_level(np.random.default_rng(3), 6)
    df.loc[df["trial_id"].str.startswith("byzantine"), "adversary_arm"] = "none"
    df.loc[df["trial_id"] == "soft0", "adversary_arm"] = "aaa"  # the reference, one trial
    fit = stats.logit_model(df, "stag ~ C(adversary_arm) * round", n_boot=50)
    assert fit.table is not None
    assert any("adversary_arm = 'aaa' (1 trial)" in n for n in fit.notes), fit.notes
    assert fit.table["p"].isna().all(), fit.table


def test_a_thin_cell_takes_the_interaction_it_alone_determines() -> None:
    """Every level holds 8 or more trials, but the cell silent x ring holds 2: in a formula
    with the disclosure x topology interaction, that coefficient rests on those 2 trials
    alone and gets no se, p or interval, with a note naming the cell; the other terms keep
    theirs. A formula of main effects has no term that cell alone determines: no note."""
    rng = np.random.default_rng(7)
    rows, t = [], 0
    for d, topology, n in (("explicit", "complete", 6), ("explicit", "ring", 6),
                           ("silent", "complete", 6), ("silent", "ring", 2)):  # fmt: skip
        for _ in range(n):
            p = expit(rng.normal(0, 0.8))
            rows += [(f"t{t}", d, topology, r - 3, float(s)) for r in range(1, 6)
                     for s in rng.random(4) < p]  # fmt: skip
            t += 1
    df = pd.DataFrame(rows, columns=["trial_id", "disclosure", "topology", "round", "stag"])
    fit = stats.logit_model(df, "stag ~ C(disclosure) * C(topology)", n_boot=50)
    assert fit.table is not None, fit.notes
    inter = "C(disclosure)[T.silent]:C(topology)[T.ring]"
    note = next(n for n in fit.notes if "fewer than 3 trials" in n)
    assert "disclosure = 'silent', topology = 'ring' (2 trials)" in note and inter in note
    assert fit.table.loc[inter, ["se", "p", "coef_lo", "coef_hi", "or_lo", "or_hi"]].isna().all()
    assert fit.table.drop(index=inter)[["se", "p"]].notna().all().all()
    main = stats.logit_model(df, "stag ~ C(disclosure) + C(topology)", n_boot=50)
    assert main.table is not None and main.table[["se", "p"]].notna().all().all()
    assert not any("fewer than 3 trials" in n for n in main.notes), main.notes


def _high_rate_null(rng: np.random.Generator, per_cell: int) -> pd.DataFrame:
    """The red team's LLM-like null: disclosure x topology x arm, ``per_cell`` trials per
    cell, 3 agents x 5 rounds (centred at round 3), logit 3.5 with trial sd 1 (stag ~0.95)
    in every cell."""
    rows, t = [], 0
    for d in ("explicit", "silent"):
        for topology in ("complete", "ring"):
            for arm in ("none", "byz"):
                for _ in range(per_cell):
                    stag = rng.random((5, 3)) < expit(3.5 + rng.normal(0, 1.0))
                    rows += [
                        (f"t{t}", d, topology, arm, r - 2, float(s))
                        for r in range(5)
                        for s in stag[r]
                    ]
                    t += 1
    columns = ["trial_id", "disclosure", "topology", "adversary_arm", "round", "stag"]
    return pd.DataFrame(rows, columns=columns)


def test_gee_round_terms_hold_their_level_at_high_stag_rates() -> None:
    """At stag ~0.95 with 2 trials per cell (16 trials, 8 coefficients) the normal
    reference rejected true nulls of the round terms in about 10% of data sets (0.103 in
    306 GEE fits of 400); the t reference on trials - coefficients df brings them to 0.066
    there. The t is on the table and its p and interval are the t's."""
    rng = np.random.default_rng(1)
    formula = "stag ~ C(disclosure) * round + C(adversary_arm) * round + C(topology) * round"
    rejected, normal, fits = 0, 0, 0
    for _ in range(60):
        fit = stats.logit_model(_high_rate_null(rng, 2), formula, n_boot=20)
        if fit.table is None or fit.method != stats.GEE_METHOD:
            continue  # separation: the Firth fallback, not this test's
        tab = fit.table
        dof = 16 - len(tab)
        np.testing.assert_allclose(tab["p"], 2 * sps.t.sf(tab["t"].abs(), dof))
        half = sps.t.ppf(0.975, dof) * tab["se"]
        np.testing.assert_allclose(tab["coef_hi"] - tab["coef"], half)
        rounds = [n for n in tab.index if "round" in n]
        rejected += int((tab.loc[rounds, "p"] < 0.05).sum())
        normal += int((2 * sps.norm.sf(tab.loc[rounds, "t"].abs()) < 0.05).sum())
        fits += len(rounds)
    assert fits >= 150
    # 0.067 (12 of 180); the normal reference on the same statistics: 0.128
    assert rejected / fits <= 0.075, rejected / fits
    assert normal / fits >= 0.1, normal / fits
    assert "t reference" in stats.GEE_METHOD


def test_the_firth_fallback_holds_its_level_on_null_data() -> None:
    """The same null (stag ~0.95, 2 trials per cell), the data sets that separate: the
    terms along which they separate rested on a cell whose trials all hunted stag, which
    no trial resample can vary, and had p < 0.05 in about half the fits (0.47 of 47, the
    other terms 0.06). They get no inference now, with the note that says why; the terms
    left hold their level on the bootstrap's standard error and the t reference, whose
    p and interval are the table's."""
    rng = np.random.default_rng(4)
    formula = "stag ~ C(disclosure) * round + C(adversary_arm) * round + C(topology) * round"
    rejected = tested = fits = 0
    for _ in range(200):
        fit = stats.logit_model(_high_rate_null(rng, 2), formula, n_boot=40)
        if fit.table is None or fit.method == stats.GEE_METHOD:
            continue
        fits += 1
        tab = fit.table.drop(index="Intercept")
        assert fit.separated_terms and "Firth" in fit.method
        assert fit.table.loc[fit.separated_terms, "p"].isna().all(), fit.table
        assert any("the terms along which the data separate" in n for n in fit.notes)
        shown = tab[tab["p"].notna()]
        np.testing.assert_allclose(shown["p"], 2 * sps.t.sf(shown["t"].abs(), 16 - len(tab) - 1))
        rejected += int((shown["p"] < 0.05).sum())
        tested += len(shown)
        if fits == 25:
            break
    assert fits == 25 and tested >= 80, (fits, tested)
    assert rejected / tested <= 0.07, (rejected, tested)


def test_one_stray_bootstrap_draw_does_not_give_a_flat_term_an_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every trial hunts the same in every round, so round's coefficient is 0 on every
    resample, but one resample's Firth stops short (the red team's 0.00139 among 398 draws
    within 1e-9 of 0): the full range then passed the flat check and the report printed a
    zero-width interval and a p from rounding. The central draws decide now."""
    rows = defence_split_rows()
    firth, calls = stats.firth_logit, [0]

    def stray_once(x: np.ndarray, k: np.ndarray, n: np.ndarray) -> np.ndarray:
        calls[0] += 1
        beta = firth(x, k, n)
        if calls[0] == 5:  # the 4th bootstrap draw (the first call is the estimate)
            beta = beta + np.array([0.0, 0.0, 0.00139])
        return beta

    monkeypatch.setattr(stats, "firth_logit", stray_once)
    fit = stats.logit_model(rows, "stag ~ C(defence) + round", n_boot=100)
    assert calls[0] == 101 and "Firth" in fit.method and fit.table is not None
    assert (
        fit.table.loc["round", ["se", "p", "coef_lo", "coef_hi", "or_lo", "or_hi"]].isna().all()
    ), fit.table
    assert any("same coefficient for round" in n for n in fit.notes)


def test_a_model_nested_in_a_population_is_not_said_to_compare_with_the_reference() -> None:
    """redteam18 finding 2: populations [a, b], [a, c] and [d, e]: a plays in two, so both
    population and model stay in the formula, and e's column is dropped (d and e play
    nowhere else). d's row then compares d with e, not with the reference model a, which
    the caption claimed. Now the fit names the factors whose rows are not contrasts with
    the reference level, the note says so and the caption's claim is withdrawn."""
    rng = np.random.default_rng(3)
    rows, t = [], 0
    for pop, models in (("a+b", "ab"), ("a+c", "ac"), ("d+e", "de")):
        for _ in range(8):
            for r in range(1, 5):
                for m in models:
                    for s in rng.random(2) < {"a": 0.3, "b": 0.5, "c": 0.6, "d": 0.8, "e": 0.9}[m]:
                        rows.append((f"t{t}", r - 2.5, float(s), pop, m))
            t += 1
    df = pd.DataFrame(rows, columns=["trial_id", "round", "stag", "population", "model"])
    formula, _ = stats.formula_terms(df)
    assert "C(population)" in formula and "C(model)" in formula, formula
    fit = stats.logit_model(df, formula, n_boot=20)
    assert fit.table is not None and "C(model)[T.e]" not in fit.table.index
    assert fit.uneven == ["C(population)", "C(model)"]
    assert any("do not compare each level with one reference level" in n for n in fit.notes)
    alias = next(n for n in fit.notes if "aliased" in n)
    assert "except the rows of C(population), C(model)" in alias
    sec = report.regression(
        _report_data(
            df.rename(columns={"model": "model_label", "population": "population_label"}).assign(
                role="honest"
            ),
            [],
        )
    )
    caption = next(b for b in sec.blocks if isinstance(b, report.Table)).caption
    assert "the Intercept's only" in caption and "compares its level with it" not in caption
    # a design without nesting keeps the plain claim
    plain = stats.logit_model(df[df["population"] != "d+e"], formula, n_boot=20)
    assert plain.uneven == []


def _flat_arm_rows(topologies: tuple[str, ...] = ("complete",)) -> pd.DataFrame:
    """One round, 4 agents: every explicit trial on the first topology has 2 of 4 stag (a
    rate strictly between 0 and 1 and no spread between trials); the other cells vary."""
    rng = np.random.default_rng(3)
    rows, t = [], 0
    for topology in topologies:
        for disclosure in ("explicit", "silent"):
            flat = disclosure == "explicit" and topology == topologies[0]
            for i in range(6):
                stags = 2 if flat else int(rng.integers(0, 5)) if i > 1 else 1 + 2 * i
                rows += [(f"t{t}", 1, float(a < stags), disclosure, topology) for a in range(4)]
                t += 1
    return pd.DataFrame(rows, columns=["trial_id", "round", "stag", "disclosure", "topology"])


def test_a_cell_whose_trials_all_have_one_rate_gets_no_inference_it_alone_decides() -> None:
    """rt39 F2: an arm whose trials all had 2 of 4 stag gave its contrast se 0.25 and
    p = 0.025 (true effect 0; the Comparisons section: p = 0.48): the trial-clustered se
    had no spread from that arm. The terms resting on it now have no se, p or interval,
    and a note says why."""
    fit = stats.logit_model(_flat_arm_rows(), "stag ~ C(disclosure) * round", n_boot=100)
    assert fit.table is not None
    row = fit.table.loc["C(disclosure)[T.silent]"]
    assert np.isfinite(row["coef"]) and row[["se", "p", "coef_lo", "coef_hi"]].isna().all()
    note = next(n for n in fit.notes if "all have the same stag rate" in n)
    assert "disclosure = 'explicit' (6 trials, rate 0.5)" in note
    assert "C(disclosure)[T.silent]" in note


def test_a_flat_cell_no_term_rests_on_alone_is_named_without_blanking() -> None:
    """Main effects of two factors: the flat cell is one of four, no coefficient rests on
    it alone, so the terms keep their inference and a note names the cell."""
    df = _flat_arm_rows(("complete", "ring"))
    fit = stats.logit_model(df, "stag ~ C(disclosure) + C(topology)", n_boot=100)
    assert fit.table is not None and fit.table["se"].notna().all()
    note = next(n for n in fit.notes if "all have the same stag rate" in n)
    assert "disclosure = 'explicit', topology = 'complete' (6 trials" in note
    assert "no term rests on them alone" in note
