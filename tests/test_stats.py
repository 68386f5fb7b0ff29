"""The statistics that can fail say so: Wilson bounds never pass their estimate, a rate with
no variation gets a real interval, separation and non-convergence fall back to Firth with
a note, a negative ICC is clamped, and the clustered intervals and tests are calibrated."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.proportion import proportion_confint

from stagbench.analysis import stats

from analysis_helpers import defence_split_rows


def test_wilson_contains_its_estimate_for_every_n_at_k0_and_kn() -> None:
    raw_violations = 0
    for n in range(1, 201):
        for k in (0, n):
            lo, hi = stats.wilson(k, n)
            assert 0.0 <= lo <= k / n <= hi <= 1.0, (k, n, lo, hi)
            bars = stats.error_bars([k / n], [lo], [hi])
            assert (bars >= 0).all()
            rlo, rhi = proportion_confint(k, n, method="wilson")
            raw_violations += not (rlo <= k / n <= rhi)
    # statsmodels' own bound lands past the estimate at some n: why the clamp exists
    assert raw_violations > 0
    assert stats.wilson(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-3)
    assert all(math.isnan(x) for x in stats.wilson(0, 0))


def test_error_bars_are_never_negative_even_when_bounds_cross() -> None:
    bars = stats.error_bars([1.0, 0.0, 0.5], [1.0000001, -0.1, 0.4], [0.9999999, 0.1, 0.6])
    assert (bars >= 0).all() and bars.shape == (2, 3)


def test_a_rate_without_variation_gets_an_interval_on_its_trials() -> None:
    lo, hi, method = stats.cluster_rate_ci(np.full(7, 5), np.full(7, 5))
    assert hi == 1.0 and lo == pytest.approx(stats.wilson(7, 7)[0]) and lo < 0.8
    assert "no variation" in method
    lo, hi, _ = stats.cluster_rate_ci(np.zeros(7), np.full(7, 5))
    assert lo == 0.0 and hi > 0.2


def _planted_trials(
    rng: np.random.Generator, trials: int, p: float, icc: float, size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Trials of 5-15 agent-rounds (``size`` each, when given) whose own rates are Beta
    around ``p`` with intra-trial correlation ``icc`` (0: every trial at p)."""
    n = rng.integers(5, 16, size=trials) if size is None else np.full(trials, size)
    if icc > 0:
        props = rng.beta(p * (1 - icc) / icc, (1 - p) * (1 - icc) / icc, size=trials)
    else:
        props = np.full(trials, p)
    return rng.binomial(n, props).astype(float), n.astype(float)


@pytest.mark.parametrize(
    ("trials", "p", "icc"),
    [(3, 0.5, 0.0), (4, 0.5, 0.3), (4, 0.2, 0.0), (6, 0.2, 0.3), (10, 0.5, 0.3), (30, 0.6, 0.2)],
)
def test_trial_clustered_interval_covers_the_truth_from_few_trials(
    trials: int, p: float, icc: float
) -> None:
    """Planted cells of a few trials (the paper design has 4 per cell): the interval
    holds its 95% to within simulation error. The percentile trial bootstrap it replaced
    covered 0.79 at 4 trials of p = 0.5 (ICC 0.3), 0.79 at 3 (ICC 0) and 0.79 at 4 of p =
    0.2 (redteam17b, finding 2)."""
    rng = np.random.default_rng(trials * 100 + int(p * 10))
    hits, sims = 0, 400
    for _ in range(sims):
        k, n = _planted_trials(rng, trials, p, icc)
        lo, hi, _ = stats.cluster_rate_ci(k, n)
        hits += lo <= p <= hi
    assert 0.9 <= hits / sims <= 1.0, hits / sims


@pytest.mark.parametrize("p", [0.05, 0.95])
def test_the_rate_interval_near_0_or_1_with_strong_correlation(p: float) -> None:
    """The weak spot the README states (redteam18, low): at rate 0.05 or 0.95, intra-trial
    correlation 0.3, 10 trials of 30 agent-rounds, the interval covers about 0.86 (the
    README's figure), not 0.95 (few trials' skewed rates); this holds it at 0.83 or more,
    symmetric in p."""
    rng = np.random.default_rng(int(p * 100))
    hits, sims = 0, 2000
    for _ in range(sims):
        k, n = _planted_trials(rng, 10, p, 0.3, size=30)
        lo, hi, _ = stats.cluster_rate_ci(k, n)
        hits += lo <= p <= hi
    assert hits / sims >= 0.83, hits / sims


@pytest.mark.parametrize(("trials_a", "trials_b", "icc"), [(4, 4, 0.0), (4, 4, 0.3), (2, 10, 0.3)])
def test_the_difference_interval_covers_the_truth_from_few_trials(
    trials_a: int, trials_b: int, icc: float
) -> None:
    """Two planted arms at 0.6 and 0.3: the difference's interval covers 0.3 at least 92%
    of the time (the trial bootstrap it replaced: 0.85-0.89 at 4 and 4 trials, 0.74 at 2
    and 10)."""
    rng = np.random.default_rng(trials_a * 10 + trials_b)
    hits, sims = 0, 400
    for _ in range(sims):
        ka, na = _planted_trials(rng, trials_a, 0.6, icc)
        kb, nb = _planted_trials(rng, trials_b, 0.3, icc)
        lo, hi, _ = stats.difference_ci(ka, na, kb, nb)
        hits += lo <= 0.3 <= hi
    assert hits / sims >= 0.92, hits / sims


def test_large_cells_get_a_narrow_interval_around_the_rate() -> None:
    rng = np.random.default_rng(0)
    k = rng.binomial(10, 0.3, size=5001)
    lo, hi, method = stats.cluster_rate_ci(k, np.full(len(k), 10))
    assert method == stats.METHOD and lo < 0.3 < hi and hi - lo < 0.01


def _two_arms(rng: np.random.Generator, silent_always_stag: bool) -> pd.DataFrame:
    rows = []
    for t in range(40):
        disc = "explicit" if t % 2 else "silent"
        u = rng.normal(0, 0.5)
        for r in range(1, 6):
            for _ in range(3):
                if disc == "silent" and silent_always_stag:
                    s = 1.0
                else:
                    s = float(rng.random() < 1 / (1 + np.exp(-(0.3 - 0.2 * r + u))))
                rows.append({"trial_id": f"t{t}", "round": r, "disclosure": disc, "stag": s})
    return pd.DataFrame(rows)


def test_separation_is_detected_and_firth_stays_finite() -> None:
    df = _two_arms(np.random.default_rng(2), silent_always_stag=True)
    fit = stats.logit_model(df, "stag ~ C(disclosure) * round", n_boot=100)
    assert "Firth" in fit.method and fit.table is not None
    assert any("separation" in n for n in fit.notes)
    assert "C(disclosure)[T.silent]" in fit.separated_terms
    assert np.isfinite(fit.table["coef"]).all()
    assert fit.table["coef"].abs().max() < 15
    # the separated terms get no inference (every silent trial alike: no spread), the
    # others get theirs
    apart = fit.table.loc[fit.separated_terms, stats.INFERENCE]
    assert apart.isna().all().all(), fit.table
    rest = fit.table.drop(index=fit.separated_terms)
    assert len(rest) and np.isfinite(rest[stats.INFERENCE].to_numpy(dtype=float)).all()
    assert any("the data separate" in n and "C(disclosure)[T.silent]" in n for n in fit.notes)
    # the raw GEE on the same data runs off (what the report used to print)
    raw = stats.gee_logit(df, "stag ~ C(disclosure) * round")
    assert raw["coef"].abs().max() > 15 or raw["coef"].isna().any()


def test_non_convergence_is_flagged_and_falls_back() -> None:
    df = _two_arms(np.random.default_rng(3), silent_always_stag=False)
    ok = stats.logit_model(df, "stag ~ C(disclosure) + round")
    assert ok.method.startswith("GEE") and not ok.notes
    capped = stats.logit_model(
        df, "stag ~ C(disclosure) + round", n_boot=50, max_iter=1, ctol=1e-12
    )
    assert "Firth" in capped.method
    assert any("did not converge" in n for n in capped.notes)
    assert capped.table is not None and np.isfinite(capped.table["coef"]).all()
    assert capped.table.loc["round", "coef"] == pytest.approx(
        ok.table.loc["round", "coef"], abs=0.1
    )


def test_a_gee_fit_that_turns_non_finite_stops_there_with_the_same_fallback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """GEE's Newton step turning NaN (a scripted run's sample did at iteration 7) ends the
    fit there instead of running its other iterations on NaN: the same Firth fallback, the
    same numbers, a note that says where it stopped."""
    from statsmodels.genmod.generalized_estimating_equations import GEE

    df = _two_arms(np.random.default_rng(3), silent_always_stag=False)
    formula = "stag ~ C(disclosure) + round"
    steps = [0]
    update_mean_params = GEE._update_mean_params

    def diverging(self: GEE) -> tuple[object, object]:  # a NaN step from the third on
        steps[0] += 1
        update, score = update_mean_params(self)
        return (update * np.nan, score * np.nan) if steps[0] >= 3 else (update, score)

    monkeypatch.setattr(GEE, "_update_mean_params", diverging)
    stopped = stats.logit_model(df, formula, n_boot=50)
    assert steps[0] == 3
    assert stopped.notes == [
        "GEE did not converge (its coefficients became non-finite at iteration 3; stopped there)"
    ]
    assert "Firth" in stopped.method and stopped.table is not None
    # the fit run to its limit, as before: 30 steps, the same fallback and numbers
    monkeypatch.setattr(stats, "_stopping_gee", lambda: GEE)
    steps[0] = 0
    full = stats.logit_model(df, formula, n_boot=50)
    assert steps[0] == 30
    assert full.method == stopped.method and full.notes != stopped.notes
    assert full.table is not None
    pd.testing.assert_frame_equal(full.table, stopped.table)
    # a fit that stays finite is not touched
    monkeypatch.setattr(GEE, "_update_mean_params", update_mean_params)
    monkeypatch.undo()
    assert stats.logit_model(df, formula).method.startswith("GEE")


def test_a_firth_term_without_spread_gets_no_interval_or_p() -> None:
    """The red team's defence design: every undefended trial hunts hare, every defended one
    stag, in every round. Each resample of trials gives round's coefficient 0 to rounding:
    no interval (it was [-7e-14, 4e-12]) and no p from the signs of rounding errors."""
    rows = defence_split_rows()
    fit = stats.logit_model(rows, "stag ~ C(defence) + round", n_boot=100)
    assert "Firth" in fit.method and fit.table is not None
    assert fit.table.loc["round", ["se", "p", "coef_lo", "coef_hi", "or_lo", "or_hi"]].isna().all()
    assert abs(fit.table.loc["round", "coef"]) < 1e-9
    assert any("same coefficient for round" in n for n in fit.notes)
    # separated: a finite coefficient, no inference, and the note that says why
    defence = fit.table.loc["C(defence)[T.none]"]
    assert defence["coef"] < -3 and defence[stats.INFERENCE].isna().all()
    assert not any("C(defence)[T.none] (the trials" in n for n in fit.notes)
    assert any("interval for Intercept, C(defence)[T.none], the terms" in n for n in fit.notes)


def test_aliased_terms_are_dropped_and_named() -> None:
    df = _two_arms(np.random.default_rng(5), silent_always_stag=False)
    df["condition"] = df["disclosure"].map({"explicit": "a", "silent": "b"})
    fit = stats.logit_model(df, "stag ~ C(disclosure) + C(condition) + round")
    assert any("aliased" in n and "C(condition)[T.b]" in n for n in fit.notes)
    assert fit.table is not None and "C(condition)[T.b]" not in fit.table.index
    assert stats.default_formula(df.assign(model="m")) == "stag ~ C(disclosure) * round"


def _factorial(**levels: list[str]) -> pd.DataFrame:
    """Two trials of 2 rounds per combination of the given factors' levels, one honest
    model ``m`` unless ``model`` is among them."""
    grid = pd.MultiIndex.from_product(list(levels.values()), names=list(levels)).to_frame()
    rows = []
    for i, cell in enumerate(grid.to_dict("records")):
        for rep in range(2):
            for r in (1, 2):
                rows.append({"model": "m", **cell, "trial_id": f"t{i}-{rep}", "round": r})
    return pd.DataFrame(rows).assign(stag=1.0)


def test_formula_holds_every_varying_design_factor_or_says_why_not() -> None:
    """Defence, prompt wording, payload and population are design factors as disclosure
    and adversary arm are: in the formula when they vary (redteam16 finding 6: the formula
    was ``stag ~ round`` for a defence x wording design), else named with the reason."""
    df = _factorial(defence=["none", "delimit"], prompt_variant=["default", "terse"])
    formula, left_out = stats.formula_terms(df)
    assert formula == "stag ~ C(prompt_variant) * round + C(defence) * round"
    assert left_out == {} and stats.default_formula(df) == formula
    df = _factorial(payload=["control", "injection"], adversary_arm=["injector"])
    assert stats.formula_terms(df) == ("stag ~ C(payload) * round", {})
    # a factor the factors before it determine: left out, and named with them
    df = _factorial(prompt_variant=["default", "terse"], adversary_arm=["none", "x"])
    df["defence"] = df["prompt_variant"].map({"default": "none", "terse": "delimit"})
    formula, left_out = stats.formula_terms(df)
    assert formula == "stag ~ C(adversary_arm) * round + C(prompt_variant) * round"
    assert list(left_out) == ["defence"] and "adversary_arm, prompt_variant" in left_out["defence"]
    # a population of one model each: C(model) stands for it, and says so
    df = _factorial(model=["a", "b"], disclosure=["explicit", "silent"])
    df["population"] = df["model"]
    formula, left_out = stats.formula_terms(df)
    assert formula == "stag ~ C(disclosure) * round + C(model)"
    assert list(left_out) == ["population"] and "C(model)" in left_out["population"]
    # populations sharing a model are not the model: in the formula
    df = _factorial(population=["a", "a+b"], disclosure=["explicit", "silent"])
    df["model"] = np.where(df["population"].eq("a+b") & (df["round"] == 2), "b", "a")
    formula, left_out = stats.formula_terms(df)
    assert formula == "stag ~ C(disclosure) * round + C(population) * round + C(model)"
    assert left_out == {}


def test_formula_is_unchanged_when_the_new_factors_do_not_vary() -> None:
    """Designs whose varying factors were all in the formula before get the same formula:
    constant defence, wording, payload and population add nothing."""
    df = _factorial(disclosure=["explicit", "silent"], adversary_arm=["none", "byz"])
    df = df.assign(defence="none", prompt_variant="default", payload="", population="m")
    assert stats.formula_terms(df) == (
        "stag ~ C(disclosure) * round + C(adversary_arm) * round",
        {},
    )


def test_constant_outcome_is_not_estimable() -> None:
    df = pd.DataFrame({"trial_id": ["a", "a", "b"], "round": [1, 2, 1], "stag": 1.0})
    fit = stats.logit_model(df, "stag ~ round")
    assert fit.table is None and "not estimable" in fit.notes[0]


def test_icc_is_clamped_for_planning() -> None:
    assert stats.clamped_icc(-0.08) == (0.0, pytest.approx(stats.clamped_icc(-0.08)[1]))
    icc, note = stats.clamped_icc(-0.08)
    assert icc == 0.0 and note is not None and "below 0" in note
    assert stats.clamped_icc(0.3) == (0.3, None)
    assert stats.clamped_icc(float("nan"))[0] == 0.0
    with pytest.raises(ValueError):
        stats.trials_per_arm(0.5, 0.7, cluster_size=15, icc=-0.1)


def test_omnibus_and_trend_tests_hold_their_size() -> None:
    rng = np.random.default_rng(8)
    hits_omni = hits_trend = 0
    sims = 150
    for i in range(sims):
        props = rng.beta(1.2, 0.8, size=60)  # strongly clustered, no group or round effect
        k = rng.binomial(1, np.repeat(props[:, None], 5, axis=1) * np.ones((60, 5)))
        kk = k * 3
        n = np.full((60, 5), 3)
        groups = np.repeat(["a", "b", "c"], 20)
        hits_omni += stats.omnibus_test(kk.sum(1), n.sum(1), groups, n_perm=200, seed=i) < 0.05
        hits_trend += stats.round_trend(kk, n).p < 0.05
    assert hits_omni / sims <= 0.1 and hits_trend / sims <= 0.1
    # a real trend is found
    k = np.tile(np.array([3, 3, 2, 1, 0]), (30, 1))
    t = stats.round_trend(k, np.full((30, 5), 3))
    assert t.z < 0 and t.p < 1e-6


def _sticky(rng: np.random.Generator, trials: int, stay: float) -> np.ndarray:
    """(trials x 4 agents x 5 rounds) actions of agents that hunt stag with probability 0.5
    in round 1 and then repeat their last action with probability ``stay`` (else toss a
    coin): stag with probability 0.5 in every round, no trend, rounds not exchangeable."""
    out = np.empty((trials, 4, 5), dtype=int)
    out[:, :, 0] = rng.random((trials, 4)) < 0.5
    for r in range(1, 5):
        keep = rng.random((trials, 4)) < stay
        out[:, :, r] = np.where(keep, out[:, :, r - 1], rng.random((trials, 4)) < 0.5)
    return out


@pytest.mark.parametrize("trials", [10, 20])  # the exact test, the normal approximation
def test_round_trend_keeps_its_level_when_agents_repeat_themselves(trials: int) -> None:
    """rt39 F1: rounds permuted within trials took persistence for a trend (p < 0.05 in
    0.20 of these data sets at 20 trials); the trials' slopes with random signs keep 0.05."""
    rng = np.random.default_rng(39)
    sims, hits = 400, 0
    for _ in range(sims):
        k = _sticky(rng, trials, 0.9).sum(axis=1)
        hits += stats.round_trend(k, np.full(k.shape, 4)).p < 0.05
    assert hits / sims <= 0.08


def test_round_trend_finds_a_planted_trend_and_its_slope() -> None:
    """Stag with probability 0.9 - 0.1 (round - 1): the slope is -0.1 per round, found by
    the exact test with 12 trials and by the normal one with 60, each interval covering."""
    rng = np.random.default_rng(7)
    prob = 0.9 - 0.1 * np.arange(5)
    for trials in (12, 60):
        k = rng.binomial(4, np.tile(prob, (trials, 1)))
        t = stats.round_trend(k, np.full(k.shape, 4))
        assert t.method == ("exact" if trials <= stats.TREND_EXACT else "normal approximation")
        assert t.p < 0.01 and t.z < 0
        assert t.slope_lo < -0.1 < t.slope_hi and abs(t.slope + 0.1) < 0.05
    # three trials: the exact test cannot go below 0.25, and says so
    t = stats.round_trend(np.tile([4, 3, 2, 1, 0], (3, 1)), np.full((3, 5), 4))
    assert t.p == t.p_min == 0.25 and "cannot give p below 0.25" in t.note
    assert math.isnan(t.slope_lo) and "same slope" in t.note and t.slope == -0.25


def test_comparisons_are_over_honest_rows_only() -> None:
    """Two arms of two trials each: honest agents hunt stag 3 of 5 rounds in arm b, the
    adversary never. Over everyone the rate would be 0.45; over honest agents it is 0.60."""
    rows = []
    for arm, trials in (("a", ("t1", "t2")), ("b", ("t3", "t4"))):
        for t in trials:
            for r in range(1, 6):
                for seat in range(4):
                    adv = arm == "b" and seat == 3
                    stag = 0.0 if adv else (1.0 if arm == "a" or r <= 3 else 0.0)
                    rows.append(
                        {
                            "trial_id": t,
                            "arm": arm,
                            "round": r,
                            "seat": seat,
                            "role": "adversary" if adv else "honest",
                            "stag": stag,
                        }
                    )
    df = pd.DataFrame(rows)
    c = stats.compare(df, "arm", "a", "b", n_perm=200)
    assert c.rate_b == pytest.approx(0.6) and c.n_b == 30 and c.population == "honest"
    every = stats.compare(df, "arm", "a", "b", n_perm=200, who="all")
    assert every.rate_b == pytest.approx(0.45) and every.n_b == 40
    fam = stats.comparison_family(df, [("arm", "a", "b")], n_perm=200)
    assert fam["rate_b"].iloc[0] == pytest.approx(0.6)


def test_resampling_by_trial_kinds_matches_trial_by_trial(monkeypatch: pytest.MonkeyPatch) -> None:
    """Large pools resample counts of each kind of trial (k of n) instead of the trials one
    by one: the same distribution, so the same p-values and intervals up to Monte Carlo."""
    rng = np.random.default_rng(3)
    n_a = rng.choice([11.0, 12.0], size=2500)
    n_b = rng.choice([11.0, 12.0], size=3000)
    k_a = rng.binomial(n_a.astype(int), 0.60).astype(float)
    k_b = rng.binomial(n_b.astype(int), 0.61).astype(float)
    groups = rng.integers(0, 5, size=5500)
    k_all, n_all = np.concatenate([k_a, k_b]), np.concatenate([n_a, n_b])
    groups[:2500] = 0  # one group differs a little
    assert stats.trial_kinds(k_a, n_a) is not None

    def run() -> tuple[float, float]:
        r = np.random.default_rng(0)
        p = stats.permutation_test(k_a, n_a, k_b, n_b, 4000, r)
        return p, stats.omnibus_test(k_all, n_all, groups, n_perm=2000)

    by_kind = run()
    monkeypatch.setattr(stats, "KINDS_FROM", 10**9)
    by_trial = run()
    assert abs(by_kind[0] - by_trial[0]) < 0.04
    assert abs(by_kind[1] - by_trial[1]) < 0.04


@pytest.mark.parametrize(
    ("shape", "high", "fraction"),
    [((5000, 2), 30, False), ((3000, 4), 4, False), ((2000, 2), 3, True), ((1500, 3), 2, False)],
)
def test_row_kinds_are_those_of_numpy_unique(
    shape: tuple[int, int], high: int, fraction: bool
) -> None:
    """Counts packed to one integer per row give np.unique(rows, axis=0)'s kinds, order
    and counts (what the resampling draws from); rows that are not whole numbers take
    numpy's own path."""
    rows = np.random.default_rng(3).integers(0, high, size=shape).astype(float)
    if fraction:
        rows = rows / 2
    kinds, counts = np.unique(rows, axis=0, return_counts=True)
    found = stats.row_kinds(rows)
    assert found is not None
    assert found[0].dtype == kinds.dtype
    np.testing.assert_array_equal(found[0], kinds)
    np.testing.assert_array_equal(found[1], counts)
    assert (stats._packed_rows(rows) is None) == fraction
    assert stats._packed_rows(-rows - 1) is None


@pytest.mark.parametrize(
    "path", ["/r/t/abc.jsonl", "/r/t/a.b.jsonl", "/r/t/.hidden", "/r/t/end.", "/r/t/plain", "x.y"]
)
def test_design_reads_a_file_stem_as_pathlib_does(path: str) -> None:
    from pathlib import Path

    from stagbench.analysis import design

    assert design._stem(path) == Path(path).stem


def _null_arms(
    rng: np.random.Generator, per_arm: int, agents: int = 4, rounds: int = 4
) -> pd.DataFrame:
    """Two disclosure arms with the same stag rate (a true null), a trial random effect."""
    rows = []
    for arm in ("explicit", "silent"):
        for t in range(per_arm):
            p = 1 / (1 + np.exp(-rng.normal(0, 0.5)))
            stag = rng.random((rounds, agents)) < p
            rows += [
                (f"{arm}{t}", arm, r + 1, float(stag[r, a]))
                for r in range(rounds)
                for a in range(agents)
            ]
    return pd.DataFrame(rows, columns=["trial_id", "disclosure", "round", "stag"])


def test_too_few_trials_for_the_coefficients_is_not_estimable() -> None:
    """1 trial per arm used to print se 5e-15 and p = 0 (the sandwich of 2 clusters for 4
    coefficients is singular); 2 per arm (4 clusters, 4 coefficients) is singular too. With
    3 per arm the model is fitted, with the bias-reduced covariance, and says so."""
    rng = np.random.default_rng(4)
    for per_arm in (1, 2):
        fit = stats.logit_model(_null_arms(rng, per_arm), "stag ~ C(disclosure) * round")
        assert fit.table is None and fit.method == "not estimable"
        assert any(
            f"too few trials for inference: {2 * per_arm} trials (clusters) for 4 coefficients" in n
            for n in fit.notes
        ), fit.notes
    # the old fit on 1 trial per arm: a collapsed standard error and p = 0
    raw = stats.gee_logit(_null_arms(rng, 1), "stag ~ C(disclosure) * round")
    assert raw["se"].max() < 1e-6 or raw["p"].min() < 1e-6 or raw["se"].isna().any()
    fit = stats.logit_model(_null_arms(rng, 3), "stag ~ C(disclosure) * round")
    assert fit.table is not None and fit.method == stats.GEE_METHOD
    assert "bias-reduced" in fit.method and (fit.table["se"] > 0.05).all()


def test_few_trials_hold_the_type_one_error_near_nominal() -> None:
    """Null data, 3 trials per arm (6 clusters, 4 coefficients): the plain sandwich with a
    normal reference (what the report printed) rejects the true null of the disclosure
    term far more often than 5%; the bias-reduced covariance keeps it near 5%
    (benchmarks/gee_small_sample.py has the larger simulation)."""
    rng = np.random.default_rng(3)
    sims, new, old = 50, 0, 0
    term = "C(disclosure)[T.silent]"
    for _ in range(sims):
        df = _null_arms(rng, 3)
        fit = stats.logit_model(df, "stag ~ C(disclosure) * round", n_boot=50)
        assert fit.table is not None, fit.notes
        new += fit.table.loc[term, "p"] < 0.05
        old += stats.gee_logit(df, "stag ~ C(disclosure) * round").loc[term, "p"] < 0.05
    assert new / sims <= 0.1, new / sims
    assert old / sims >= 0.14, old / sims


def _planted_cells(
    rng: np.random.Generator, rates: list[float], sizes: list[int], rho: float, trials: int
) -> pd.DataFrame:
    """Per cell ``trials`` trials of ``size`` 0/1 outcomes whose trial rate is drawn from a
    beta around the cell's rate with intra-trial correlation ``rho`` (0: independent)."""
    frames = []
    for c, (p, m) in enumerate(zip(rates, sizes, strict=True)):
        if rho > 0:
            q = rng.beta(p * (1 - rho) / rho, (1 - p) * (1 - rho) / rho, size=trials)
        else:
            q = np.full(trials, p)
        stag = (rng.random((trials, m)) < q[:, None]).astype(float).ravel()
        ids = np.repeat([f"c{c}t{t}" for t in range(trials)], m)
        frames.append(pd.DataFrame({"trial_id": ids, "condition": f"c{c}", "stag": stag}))
    return pd.concat(frames, ignore_index=True)


def test_icc_is_estimated_within_design_cells() -> None:
    """Cells with very different true rates (0.1, 0.5, 0.9): pooling them (the old
    estimate, ``cells=[]``) counts the cells' differences as within-trial correlation;
    within cells the planted ICC comes back, with equal and with unequal trial sizes."""
    rng = np.random.default_rng(6)
    for rho, sizes in ((0.1, [10, 10, 10]), (0.3, [3, 12, 40]), (0.0, [10, 10, 10])):
        df = _planted_cells(rng, [0.1, 0.5, 0.9], sizes, rho, trials=150)
        assert stats.cell_factors(df) == ["condition"]
        assert stats.icc_estimate(df) == pytest.approx(rho, abs=0.05), (rho, sizes)
        assert stats.icc_estimate(df, cells=["condition"]) == stats.icc_estimate(df)
        assert stats.icc_estimate(df, cells=[]) > rho + 0.2  # pooled: far off
    # one cell: the same as the one-way ANOVA over all trials
    one = _planted_cells(rng, [0.5], [8], 0.2, trials=200)
    assert stats.icc_estimate(one) == stats.icc_estimate(one, cells=[])
    assert stats.icc_estimate(one) == pytest.approx(0.2, abs=0.06)
    assert np.isnan(stats.icc_estimate(_planted_cells(rng, [0.3, 0.6], [5, 5], 0.1, trials=1)))


def test_cluster_sizes_are_per_cell_smallest_first() -> None:
    rng = np.random.default_rng(7)
    df = _planted_cells(rng, [0.5, 0.5, 0.5], [20, 3, 9], 0.0, trials=4)
    df.loc[df.index[:5], "stag"] = np.nan  # 5 missing actions in c0t0: 15 valid there
    sizes = stats.cluster_sizes(df)
    assert sizes["cell"].tolist() == ["condition=c1", "condition=c2", "condition=c0"]
    assert sizes["trials"].tolist() == [4, 4, 4]
    assert sizes["cluster_size"].tolist() == [3.0, 9.0, (15 + 20 * 3) / 4]
    two = df.assign(topology=np.where(df["condition"] == "c0", "ring", "star"))
    names = stats.cluster_sizes(two)["cell"].tolist()
    assert names == ["condition=c1; topology=star", "condition=c2; topology=star",
                     "condition=c0; topology=ring"]  # fmt: skip
    single = stats.cluster_sizes(df, cells=[])
    assert single["cell"].tolist() == ["all trials (one design cell)"]
    assert single["cluster_size"].iloc[0] == pytest.approx((15 + 20 * 3 + 12 + 36) / 12)


def test_bias_reduced_covariance_equals_statsmodels() -> None:
    """Our Woodbury form of the Mancl-DeRouen covariance (a small solve per trial) gives
    statsmodels' ``cov_type="bias_reduced"`` (a solve the size of the trial's rows)."""
    import statsmodels.api as sm
    from patsy import dmatrices

    df = _null_arms(np.random.default_rng(9), 4, agents=3, rounds=6)
    y, x = dmatrices("stag ~ C(disclosure) * round", df, return_type="dataframe")
    model = sm.GEE(
        y,
        x,
        groups=pd.factorize(df["trial_id"])[0],
        family=sm.families.Binomial(),
        cov_struct=sm.cov_struct.Exchangeable(),
    )
    res = model.fit(cov_type="bias_reduced")
    ours = stats.bias_reduced_cov(model)
    assert ours is not None
    np.testing.assert_allclose(ours, res.cov_robust_bc, rtol=1e-9, atol=1e-12)
    # and it is larger than the plain sandwich (what the correction is for)
    assert (np.diag(ours) > np.diag(res.cov_robust)).all()
    fit = stats.logit_model(df, "stag ~ C(disclosure) * round")
    assert fit.table is not None
    np.testing.assert_allclose(fit.table["se"], np.sqrt(np.diag(res.cov_robust_bc)), rtol=1e-6)


def test_a_rate_shared_by_every_trial_gets_a_wilson_interval_not_zero_width() -> None:
    """Every trial at 0.2 (a deterministic population) made a [0.2, 0.2] "trial bootstrap"
    interval. It is the Wilson interval at 0.2 over the number of trials."""
    k, n = np.full(5, 2.0), np.full(5, 10.0)
    lo, hi, method = stats.cluster_rate_ci(k, n)
    assert (lo, hi) == pytest.approx(stats.wilson_rate(0.2, 5)) and lo < 0.2 < hi
    assert method.startswith("Wilson on trials")
    assert stats.wilson_rate(0.3, 10) == pytest.approx(stats.wilson(3, 10))
    # varying trials: Wilson over the design-effect n with the t quantile of 2 df
    k = np.array([2.0, 3.0, 2.0])
    lo, hi, method = stats.cluster_rate_ci(k, np.full(3, 10.0))
    rate = 7 / 30
    var = 3 / 2 * float(((k - rate * 10) ** 2).sum()) / 30**2
    effective = min(rate * (1 - rate) / var, 30.0)
    t = float(sps.t.ppf(0.975, 2))
    assert method == stats.METHOD
    assert (lo, hi) == pytest.approx(stats.wilson_rate(rate, effective, quantile=t))
    assert (lo, hi) == pytest.approx(stats.wilson_rate(rate, 30.0, quantile=t))  # capped


def test_a_difference_combines_the_arms_intervals() -> None:
    """8 trials of 10/10 against 8 trials of 2/10: the bootstrap of the difference was
    [0.8, 0.8]. Each arm enters by its own interval (``cluster_rate_ci``: here the Wilson
    interval on trials of an arm without variation), combined by Newcombe's
    square-and-add; so do arms that vary."""
    ka, na, kb, nb = np.full(8, 10.0), np.full(8, 10.0), np.full(8, 2.0), np.full(8, 10.0)
    lo, hi, _ = stats.difference_ci(ka, na, kb, nb)
    la, ua = stats.wilson_rate(1.0, 8)
    lb, ub = stats.wilson_rate(0.2, 8)
    assert lo == pytest.approx(0.8 - math.hypot(1.0 - la, ub - 0.2))
    assert hi == pytest.approx(min(1.0, 0.8 + math.hypot(ua - 1.0, 0.2 - lb)))
    assert lo < 0.8 <= hi
    rng = np.random.default_rng(9)
    ka = rng.integers(0, 11, 12).astype(float)
    kb = rng.integers(0, 21, 9).astype(float)
    na, nb = np.full(12, 10.0), np.full(9, 20.0)
    ra, rb = ka.sum() / na.sum(), kb.sum() / nb.sum()
    a_lo, a_hi, _ = stats.cluster_rate_ci(ka, na)
    b_lo, b_hi, _ = stats.cluster_rate_ci(kb, nb)
    want = (ra - rb - math.hypot(ra - a_lo, b_hi - rb), ra - rb + math.hypot(a_hi - ra, rb - b_lo))
    assert stats.difference_ci(ka, na, kb, nb)[:2] == pytest.approx(want)
    # an arm of one trial enters by the Wilson interval on its one trial, not over its
    # agent-rounds (which would take them for independent draws)
    lo, hi, how = stats.difference_ci(np.array([7.0]), np.array([10.0]), kb, nb)
    one = stats.wilson_rate(0.7, 1)
    want = (
        0.7 - rb - math.hypot(0.7 - one[0], b_hi - rb),
        0.7 - rb + math.hypot(one[1] - 0.7, rb - b_lo),
    )
    assert (lo, hi) == pytest.approx(want) and "arm a (Wilson on trials (one trial))" in how
    assert hi - lo > 1.0  # over its 10 agent-rounds instead: 0.72 wide


def test_a_mean_without_spread_between_trials_has_no_interval() -> None:
    """Payoffs that vary within trials but average the same in every trial (2.5 per round
    in each: a deterministic population) printed 2.5 [2.5, 2.5]; the table promises a blank
    when there is no spread between trials. The one-pass group means give the same."""
    values = np.array([0.0, 5.0, 3.0, 2.0, 5.0, 0.0, 2.0, 3.0])
    trials = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    mean, lo, hi = stats.mean_ci(values, trials)
    assert mean == 2.5 and math.isnan(lo) and math.isnan(hi)
    grouped = stats.group_mean_cis(values, np.zeros(8, dtype=int), trials, [0])
    assert grouped[0][0] == 2.5 and math.isnan(grouped[0][1]) and grouped[0][3] == 8
    varied = stats.mean_ci(np.array([0.0, 5.0, 3.0, 3.0]), np.array([0, 0, 1, 1]))
    # two trials, sums 5 and 6 of 2 values: 2.75 +- t(1) * sqrt(2 / 1 * (0.5^2 + 0.5^2)) / 4
    half = float(sps.t.ppf(0.975, 1)) * math.sqrt(2 / 1 * (0.5**2 + 0.5**2)) / 4
    assert varied == pytest.approx((2.75, 2.75 - half, 2.75 + half))


@pytest.mark.parametrize(("trials", "p", "icc"), [(3, 0.5, 0.0), (4, 0.8, 0.0), (6, 0.5, 0.3)])
def test_a_trial_clustered_mean_covers_the_truth_from_few_trials(
    trials: int, p: float, icc: float
) -> None:
    """Planted payoffs (a stag hunter earns 10 when its trial's other hunt succeeds, else
    0; hare 3), each trial's stag rate Beta around ``p`` with intra-trial correlation
    ``icc``: the mean's interval covers the true mean at least 88% of the time (the trial
    bootstrap it replaced: 0.75 at 3 trials, 0.82 at 4, 0.84 at 6)."""
    rng = np.random.default_rng(trials)
    if icc > 0:
        a, b = p * (1 - icc) / icc, (1 - p) * (1 - icc) / icc
        second = a * (a + 1) / ((a + b) * (a + b + 1))
    else:
        a = b = 0.0
        second = p * p
    truth = 10 * second + 3 * (1 - p)
    hits = sims = 0
    for _ in range(400):
        rates = rng.beta(a, b, trials) if icc > 0 else np.full(trials, p)
        values, clusters = [], []
        for t, rate in enumerate(rates):
            rows = int(rng.integers(5, 16))
            stag, success = rng.random(rows) < rate, rng.random(rows) < rate
            values += list(np.where(stag, np.where(success, 10.0, 0.0), 3.0))
            clusters += [t] * rows
        mean, lo, hi = stats.mean_ci(np.array(values), np.array(clusters))
        if math.isnan(lo):
            continue
        sims += 1
        hits += lo <= truth <= hi
    assert sims > 350 and hits / sims >= 0.88, hits / sims


def test_the_same_trials_get_the_same_interval_in_any_table() -> None:
    """A group's interval is a function of its own counts: the same trials give the same
    interval in a table with other groups beside them, alone, or with other groups, in any
    order; other counts give another interval."""
    rng = np.random.default_rng(2)

    def group(name: str, p: float) -> pd.DataFrame:
        n = rng.integers(5, 20, size=40)
        return pd.DataFrame({"cell": name, "trial_id": [f"{name}{i:02d}" for i in range(40)],
                             "k": rng.binomial(n, p), "n": n})  # fmt: skip

    a, b, c = group("a", 0.6), group("b", 0.3), group("c", 0.8)
    cols = ["rate", "ci_lo", "ci_hi", "n", "trials", "ci"]
    tables = [pd.concat(parts) for parts in ([b], [a, b], [b, c], [a, b, c])]
    rows = [stats.rate_table_counts(t, ["cell"]).set_index("cell").loc["b", cols] for t in tables]
    for row in rows[1:]:
        assert row.equals(rows[0])
    assert rows[0]["ci_hi"] > rows[0]["ci_lo"]
    backwards = stats.rate_table_counts(b.iloc[::-1], ["cell"]).iloc[0]
    assert backwards[cols].equals(rows[0])
    other = stats.rate_table_counts(b.assign(k=b["n"] // 2), ["cell"]).iloc[0]
    assert (other["ci_lo"], other["ci_hi"]) != (rows[0]["ci_lo"], rows[0]["ci_hi"])


def test_one_trial_rate_interval_counts_the_trial_once() -> None:
    """One trial at 19 of 20 stag printed [0.76, 0.99] (Wilson over its agent-rounds, as if
    independent), while 20 of 20 gave [0.21, 1]: one hare raised the lower bound. Now one
    trial is one observation, at every rate (redteam18 finding 1)."""
    lo, hi, how = stats.cluster_rate_ci([19], [20])
    assert (lo, hi) == pytest.approx(stats.wilson_rate(0.95, 1)) and "one trial" in how
    full = stats.cluster_rate_ci([20], [20])
    assert lo < 0.3 and full[0] < 0.3 and lo < 0.95 < hi
    assert stats.cluster_rate_ci([12], [20])[0] < 0.2
