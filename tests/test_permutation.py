"""The trial-permutation tests (comparisons and omnibus): a studentized statistic keeps
their size when arms' trials differ in size, the p-value is exact where the distinct
splits are few, and Monte Carlo p-values reach below alpha / family where a Holm family
needs them. Simulations are small and seeded; benchmarks/bench_permutation.py runs
bigger ones."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from stagbench.analysis import report, stats


def _raw_difference_p(
    ka: np.ndarray, na: np.ndarray, kb: np.ndarray, nb: np.ndarray, n_perm: int, seed: int
) -> float:
    """The test this replaced: permute whole trials, statistic the raw difference of
    pooled rates (kept here to show the simulated designs are ones where it fails)."""
    rng = np.random.default_rng(seed)
    k, n, m = np.r_[ka, kb], np.r_[na, nb], len(ka)
    observed = abs(ka.sum() / na.sum() - kb.sum() / nb.sum())
    perms = (rng.random((n_perm, len(k))).argsort(axis=1) < m).astype(float)
    ka_p, na_p = perms @ k, perms @ n
    diffs = np.abs(ka_p / na_p - (k.sum() - ka_p) / (n.sum() - na_p))
    return float((np.sum(diffs >= observed - 1e-12) + 1) / (n_perm + 1))


def _arms(
    rng: np.random.Generator, trials: int, size_a: int, size_b: int, pa: float, pb: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    na, nb = np.full(trials, float(size_a)), np.full(trials, float(size_b))
    ka = rng.binomial(size_a, pa, trials).astype(float)
    kb = rng.binomial(size_b, pb, trials).astype(float)
    return ka, na, kb, nb


def test_red_team_example_has_its_exact_p() -> None:
    """8 trials all 10/10 against 8 all 2/10: only the observed split and its mirror are
    as extreme, so p = 2 / C(16, 8) exactly, and Holm over 309 such rows is below 0.05
    (the Monte Carlo floor 1/1001 made it 0.31)."""
    test = stats.two_sample_permutation_test(
        np.full(8, 10.0), np.full(8, 10.0), np.full(8, 2.0), np.full(8, 10.0), 1000, 0, 309
    )
    assert test.method == "exact" and test.splits == math.comb(16, 8)
    assert test.p == pytest.approx(2 / math.comb(16, 8), rel=1e-9)
    assert test.p_min == pytest.approx(test.p, rel=1e-9)
    assert test.describe() == "exact (12,870 splits)"
    assert stats.holm([test.p] * 309)[0] == pytest.approx(309 * 2 / 12870)
    assert 309 * 2 / 12870 < 0.05


def test_exact_p_is_the_share_of_all_labelled_splits() -> None:
    """Counting splits by trial kinds and weighing each by its hypergeometric probability
    gives the p of enumerating every labelled split one by one; for two arms the
    statistic is the squared studentized difference with clustered variances."""
    rng = np.random.default_rng(4)
    k = np.r_[rng.binomial(10, 0.5, 6), rng.binomial(13, 0.7, 5), [4, 4, 4]].astype(float)
    n = np.r_[np.full(6, 10.0), np.full(5, 13.0), [10.0, 10.0, 10.0]]
    groups = np.r_[np.zeros(7, int), np.ones(7, int)]
    test = stats.group_permutation_test(k, n, groups, rng=0)
    every = _every_split(k, n, [7, 7])
    observed = _every_split(k, n, [7, 7], only=groups)[0]
    assert test.method == "exact" and test.splits == len(every) == 3432
    assert test.p == pytest.approx(float(np.mean(stats._at_least(every, observed))), rel=1e-9)
    ka, na, kb, nb = k[:7], n[:7], k[7:], n[7:]
    ra, rb = ka.sum() / na.sum(), kb.sum() / nb.sum()
    va = 7 / 6 * ((ka - ra * na) ** 2).sum() / na.sum() ** 2
    vb = 7 / 6 * ((kb - rb * nb) ** 2).sum() / nb.sum() ** 2
    assert observed[0] == 0 and observed[1] == pytest.approx((ra - rb) ** 2 / (va + vb))
    # three groups: the same against every labelled split
    k3, n3, groups3 = k[:9], n[:9], np.repeat([0, 1, 2], 3)
    test3 = stats.group_permutation_test(k3, n3, groups3, rng=0)
    every3 = _every_split(k3, n3, [3, 3, 3])
    hits = float(np.mean(stats._at_least(every3, _every_split(k3, n3, [3, 3, 3], groups3)[0])))
    assert test3.method == "exact" and test3.splits == len(every3) == 1680
    assert test3.p == pytest.approx(hits, rel=1e-9) and 0 < hits < 1


def _assignments(trials: list[int], sizes: list[int]) -> Iterator[np.ndarray]:
    if not sizes:
        yield np.zeros(0, int)
        return
    for first in itertools.combinations(trials, sizes[0]):
        rest = [t for t in trials if t not in first]
        for tail in _assignments(rest, sizes[1:]):
            codes = np.zeros(len(trials), int)
            pos = {t: i for i, t in enumerate(trials)}
            for t, c in zip(rest, tail, strict=True):
                codes[pos[t]] = c + 1
            yield codes


def _every_split(
    k: np.ndarray, n: np.ndarray, sizes: list[int], only: np.ndarray | None = None
) -> np.ndarray:
    """``wald_statistic`` of every labelled assignment of the trials to groups of these
    sizes, one by one (or of the one assignment ``only``)."""
    feat = stats._features(k, n)
    labels = [only] if only is not None else list(_assignments(list(range(len(k))), sizes))
    onehot = np.stack([np.eye(len(sizes))[c] for c in labels])  # splits x trials x groups
    return stats.wald_statistic(np.einsum("stg,tf->sgf", onehot, feat))


def test_size_holds_when_trials_differ_in_size() -> None:
    """A true null (every agent-round Bernoulli(0.6)), 12 trials of 10 agent-rounds
    against 12 of 180: the raw-difference permutation rejects about 40% at 5%, the
    studentized one near 5%."""
    rng = np.random.default_rng(1)
    sims, new, old = 300, 0, 0
    for i in range(sims):
        ka, na, kb, nb = _arms(rng, 12, 10, 180, 0.6, 0.6)
        new += stats.two_sample_permutation_test(ka, na, kb, nb, 200, i).p < 0.05
        if i < 100:
            old += _raw_difference_p(ka, na, kb, nb, 200, i) < 0.05
    assert 0.02 <= new / sims <= 0.08, new / sims
    assert old / 100 > 0.25, old / 100


def test_power_on_a_planted_effect() -> None:
    """0.45 against 0.6 in the same unequal design: found most of the time."""
    rng = np.random.default_rng(2)
    sims = 100
    hits = sum(
        stats.two_sample_permutation_test(*_arms(rng, 12, 10, 180, 0.45, 0.6), 200, i).p < 0.05
        for i in range(sims)
    )
    assert hits / sims >= 0.75, hits / sims


def test_omnibus_size_and_power_with_unequal_trials() -> None:
    """Four groups of 12 trials of 10, 3, 20 and 180 agent-rounds: near 5% under a true
    null (the raw pooled chi-square permuted rejected about 14%), and a planted
    difference in one group is found."""
    rng = np.random.default_rng(3)
    sizes = np.repeat([10, 3, 20, 180], 12)
    groups = np.repeat(np.arange(4), 12)
    sims, hits = 200, 0
    for i in range(sims):
        k = rng.binomial(sizes, 0.6)
        hits += stats.omnibus_test(k, sizes, groups, n_perm=200, seed=i) < 0.05
    assert 0.02 <= hits / sims <= 0.08, hits / sims
    found = 0
    for i in range(50):
        k = rng.binomial(sizes, np.where(groups == 0, 0.35, 0.6))
        found += stats.omnibus_test(k, sizes, groups, n_perm=200, seed=i) < 0.05
    assert found / 50 >= 0.75, found / 50


def test_holm_finds_a_family_of_strong_effects() -> None:
    """300 comparisons of 10 trials at 0.9 against 10 at 0.2 (10 agent-rounds each, binomial
    noise): with the family
    size passed, every p is below 0.05 / 300 and Holm keeps all of them; a Monte Carlo
    test near its floor draws past 1000 permutations (Besag-Clifford) when the family
    needs it, and not otherwise."""
    rng = np.random.default_rng(5)
    ps = []
    for i in range(300):
        ka, na, kb, nb = _arms(rng, 10, 10, 10, 0.9, 0.2)
        test = stats.two_sample_permutation_test(ka, na, kb, nb, 1000, i, family=300)
        assert test.p >= test.p_min
        ps.append(test.p)
    assert sum(p < 0.05 for p in stats.holm(ps)) == 300
    # many kinds of trial: too many splits to enumerate
    k = rng.binomial(np.r_[np.arange(10, 40), np.arange(10, 40)], np.repeat([0.8, 0.3], 30))
    n = np.r_[np.arange(10, 40), np.arange(10, 40)].astype(float)
    ka, na, kb, nb = k[:30].astype(float), n[:30], k[30:].astype(float), n[30:]
    alone = stats.two_sample_permutation_test(ka, na, kb, nb, 1000, 0)
    assert alone.method == "monte carlo" and alone.p == pytest.approx(1 / 1001)
    in_family = stats.two_sample_permutation_test(ka, na, kb, nb, 1000, 0, family=300)
    assert in_family.method == "monte carlo" and in_family.draws > 1000
    assert in_family.p < 0.05 / 300 and in_family.p_min < 0.05 / 300 / 5
    assert in_family.describe() == f"Monte Carlo ({in_family.draws:,} permutations)"
    # a null comparison stops at 1000 whatever the family
    kb_null = rng.binomial(n[30:].astype(int), 0.8).astype(float)
    null = stats.two_sample_permutation_test(ka, na, kb_null, nb, 1000, 0, family=300)
    assert null.draws == 1000 or null.p < 0.011


def test_sequential_p_keeps_its_size() -> None:
    """Under a true null with the family's sequential draws on, p stays super-uniform
    at small levels too (Besag-Clifford after a fixed first stage is a valid p)."""
    rng = np.random.default_rng(6)
    n = np.r_[np.arange(10, 30), np.arange(10, 30)].astype(float)
    ps = []
    for i in range(300):
        k = rng.binomial(n.astype(int), 0.5).astype(float)
        ps.append(stats.two_sample_permutation_test(k[:20], n[:20], k[20:], n[20:], 100, i, 50).p)
    ps_arr = np.array(ps)
    for level in (0.02, 0.05, 0.2):
        assert np.mean(ps_arr <= level) <= level + 2.5 * math.sqrt(level / 300), level


def test_degenerate_arms_say_what_they_return() -> None:
    ones, tens = np.ones(5), np.full(5, 10.0)
    # no variation at all: every split gives the same statistic
    for k in (0.0, 10.0, 5.0):
        t = stats.two_sample_permutation_test(tens * 0 + k, tens, tens * 0 + k, tens, 100, 0)
        assert (t.p, t.method, t.describe()) == (1.0, "no variation", "no variation")
    # one trial per arm: two splits, both as extreme
    t = stats.two_sample_permutation_test(np.r_[3.0], np.r_[8.0], np.r_[6.0], np.r_[8.0], 9, 0)
    assert (t.p, t.method, t.splits) == (1.0, "exact", 2.0)
    # one trial against nine: an arm with no spread against one with some, so trial
    # rates permuted among the places: p = the one trial's rank among 10, drawn
    kb = np.array([5, 4, 6, 5, 5, 4, 6, 5, 5], dtype=float)
    t = stats.two_sample_permutation_test(np.r_[10.0], np.r_[10.0], kb, np.full(9, 10.0), 9, 0)
    assert t.method == stats.NO_SPREAD.format(rates="exact, 4 arrangements", draws=200)
    assert t.p == pytest.approx(0.1) and t.p_min == pytest.approx(0.1)
    # an arm with no spread against one with spread: (ra - rb)^2 / V_b, finite
    kb = np.array([2.0, 4.0, 3.0, 5.0, 1.0])
    sums = np.stack(
        [np.bincount(np.r_[np.zeros(5, int), np.ones(5, int)], f, minlength=2)
         for f in stats._features(np.r_[tens, kb], np.r_[tens, tens]).T],
        axis=1,
    )  # fmt: skip
    rb = kb.sum() / 50
    vb = 5 / 4 * ((kb - rb * 10) ** 2).sum() / 50**2
    assert stats.wald_statistic(sums)[1] == pytest.approx((1 - rb) ** 2 / vb)
    # fewer than two groups: no test; trials with no agent-rounds are left out
    assert math.isnan(stats.omnibus_test(kb, tens, np.zeros(5)))
    assert stats.group_permutation_test(kb, tens, np.zeros(5)).method == "no test"
    base = stats.two_sample_permutation_test(kb, tens, kb[::-1] + ones, tens, 50, 3)
    padded = stats.two_sample_permutation_test(
        np.r_[kb, 0.0], np.r_[tens, 0.0], kb[::-1] + ones, tens, 50, 3
    )
    assert padded.p == base.p


def test_seeded_and_reproducible() -> None:
    rng = np.random.default_rng(7)
    n = np.arange(10, 70).astype(float)
    k = rng.binomial(n.astype(int), 0.5).astype(float)
    groups = np.repeat([0, 1, 2], 20)
    a = stats.group_permutation_test(k, n, groups, 500, rng=11, family=40)
    assert a == stats.group_permutation_test(k, n, groups, 500, rng=11, family=40)
    assert a.method == "monte carlo"
    c1 = stats.compare_counts(k[:30], n[:30], k[30:], n[30:], n_perm=300, seed=2)
    assert c1 == stats.compare_counts(k[:30], n[:30], k[30:], n[30:], n_perm=300, seed=2)


def _design(arms: int, trials: int, seed: int) -> report.ReportData:
    """``arms`` adversary arms against none under two disclosures, ``trials`` trials of
    4 honest agents x 5 rounds per cell: none near 0.9, every arm near 0.2, disclosure
    without effect."""
    rng = np.random.default_rng(seed)
    rows = []
    levels = ["none", *(f"arm{j:02d}" for j in range(arms))]
    t = 0
    for disc in ("explicit", "silent"):
        for adv in levels:
            for _ in range(trials):
                t += 1
                p = float(np.clip((0.9 if adv == "none" else 0.2) + rng.normal(0, 0.05), 0, 1))
                for r in range(1, 6):
                    for seat in range(4):
                        stag = bool(rng.random() < p)
                        rows.append(
                            {
                                "trial_id": f"t{t:05d}", "round": r, "seat": seat,
                                "player": seat, "role": "honest", "model": "scripted/x",
                                "model_label": "x", "adversary": "", "stag": float(stag),
                                "action": "stag" if stag else "hare",
                                "signalled_stag": False, "hunt_succeeded": False,
                                "disclosure": disc, "adversary_arm": adv,
                            }
                        )  # fmt: skip
    df = pd.DataFrame(rows)
    for col in ("trial_id", "role", "model", "model_label", "disclosure", "adversary_arm"):
        df[col] = df[col].astype("category")
    df["cell"] = (df["disclosure"].astype(str) + " · " + df["adversary_arm"].astype(str)).astype(
        "category"
    )
    return report.ReportData(
        df=df,
        agent_trials=pd.DataFrame(),
        trials=pd.DataFrame(),
        load=report.LoadReport(),
        n_boot=200,
        factors=["disclosure", "adversary_arm"],
    )


def test_report_comparisons_reach_holm_and_say_how_p_was_made() -> None:
    """30 strong arm effects in each of two contexts and 31 null disclosure pairs: the
    table sizes its permutations by the family, so Holm keeps all 60 effects (with the
    old 1000-permutation floor, 1/1001 x 91 > 0.05 kept none) and no null pair; every
    row says how its p was obtained and its resolution."""
    d = _design(30, 10, 0)
    section = report.comparisons(d)
    table = next(b for b in section.blocks if isinstance(b, report.Table)).df
    assert len(table) == 91
    strong = table["factor"] == "adversary"
    assert (table.loc[strong, "p_holm"] < 0.05).all()
    assert (table.loc[~strong, "p_holm"] >= 0.05).all()
    assert table["p_method"].str.fullmatch(r"exact \([\d,]+ splits\)|Monte Carlo \([\d,]+ "
                                           r"permutations\)").all()  # fmt: skip
    assert (table["p"] >= table["p_min"] - 1e-15).all()
    assert (table.loc[strong, "p_min"] < 0.05 / 91).all()
    assert (table["test"] == "studentized trial permutation").all()
    assert "omnibus" not in table.columns
    text = report._omnibus(d, ["disclosure", "adversary_arm"])
    assert "Wald chi-square" in text and ("exact (" in text or "Monte Carlo (" in text)


def test_report_comparisons_name_the_no_spread_test_on_its_rows() -> None:
    """An arm whose trials are all stag takes the no-spread test: its rows of the table
    name it in ``test`` and ``p_method``; the rows whose arms both vary keep the
    studentized permutation."""
    d = _design(1, 6, 3)
    flat = (d.df["disclosure"] == "explicit") & (d.df["adversary_arm"] == "none")
    d.df.loc[flat, "stag"] = 1.0
    d.df.loc[flat, "action"] = "stag"
    table = next(b for b in report.comparisons(d).blocks if isinstance(b, report.Table)).df
    by_flat = table["p_method"].str.startswith(stats.NO_SPREAD_TEST)
    assert by_flat.any() and not by_flat.all()
    assert (
        table.loc[by_flat, "test"]
        == "trial rates among places, and agent-rounds (an arm with no spread)"
    ).all()
    assert (table.loc[~by_flat, "test"] == "studentized trial permutation").all()
    # exactly the two rows that hold the flat arm (explicit, none)
    holds = ((table["a"] == "explicit") & (table["context"] == "adversary=none")) | (
        (table["a"] == "none") & (table["context"] == "disclosure=explicit")
    )
    assert by_flat.tolist() == holds.tolist() and holds.sum() == 2


def test_the_m_smallest_keys_make_a_uniform_subset_of_exactly_m_per_row() -> None:
    """``_smallest`` picks exactly m trials per row, each m-subset equally often for
    uniform keys, and a row whose keys tie at the m-th takes exactly m as well."""
    rng = np.random.default_rng(4)
    mask = stats._smallest(rng.random((60_000, 4)), 2)
    assert (mask.sum(axis=1) == 2).all()
    codes = mask @ np.array([1, 2, 4, 8])
    counts = np.unique(codes, return_counts=True)[1]
    assert len(counts) == 6 and abs(counts / 60_000 - 1 / 6).max() < 0.01
    tied = np.array([[0.5, 0.1, 0.5, 0.5], [0.3, 0.3, 0.3, 0.3], [0.9, 0.2, 0.4, 0.2]])
    got = stats._smallest(tied, 2)
    assert (got.sum(axis=1) == 2).all()
    assert got[0].tolist() == [1, 1, 0, 0] and got[2].tolist() == [0, 1, 0, 1]
    assert (stats._smallest(tied, 0) == 0).all() and (stats._smallest(tied, 4) == 1).all()


def test_an_arm_with_no_spread_is_not_weighed_by_its_trial_sizes() -> None:
    """redteam20: every trial of arm a all stag (10 trials of 20 agent-rounds), arm b's one
    hare in 150 (10 of 15: its honest seats are fewer). Whole trials permuted gave
    p = 1.1e-5, the share of splits that put the 15s on one side; one hare is no evidence,
    and the test of an arm with no spread says so."""
    kb = np.full(10, 15.0)
    kb[3] = 14.0
    test = stats.two_sample_permutation_test(
        np.full(10, 20.0), np.full(10, 20.0), kb, np.full(10, 15.0), 2000, 0
    )
    assert test.method == stats.NO_SPREAD.format(rates="exact, 2 arrangements", draws=2000)
    assert test.p > 0.4 and test.p_min == 1.0  # the hare's trial on either side: as extreme
    # the same evidence at equal sizes: p 1 both ways
    same = stats.two_sample_permutation_test(
        np.full(10, 15.0), np.full(10, 15.0), kb, np.full(10, 15.0), 2000, 0
    )
    assert same.p == 1.0


@pytest.mark.parametrize(
    ("rate", "icc", "trials", "sizes"),
    [(0.99, 0.0, (10, 10), (20, 15)), (0.1, 0.5, (5, 20), (20, 5)), (0.02, 0.0, (10, 10), (20, 5))],
)
def test_the_level_holds_where_an_arm_may_have_no_spread(
    rate: float, icc: float, trials: tuple[int, int], sizes: tuple[int, int]
) -> None:
    """Planted nulls (both arms at one rate; beta-binomial trials at intra-trial correlation
    ``icc``) where an arm often has no spread and the arms' trials differ in size: the test
    rejects at 0.05 in at most its level (plus twice the simulation's error). Whole trials
    permuted rejected in 0.11, 0.14 and 0.10 of them (redteam20)."""
    rng = np.random.default_rng(20)
    datasets, rejected = 300, 0
    for i in range(datasets):
        arms = []
        for m, size in zip(trials, sizes, strict=True):
            q = np.full(m, rate)
            if icc:
                q = rng.beta(rate * (1 - icc) / icc, (1 - rate) * (1 - icc) / icc, m)
            arms += [rng.binomial(size, q).astype(float), np.full(m, float(size))]
        rejected += stats.two_sample_permutation_test(*arms, 200, i).p <= 0.05
    assert rejected / datasets <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / datasets)


def test_rates_among_places_drawn_by_kinds_are_uniform_permutations() -> None:
    """Drawing how many rates of each kind go to each kind of place gives the law of a
    uniform random permutation of the rates among the places: its share of permutations
    at least as extreme is the share among all 720 of them, enumerated."""
    import itertools

    k = np.array([10.0, 10.0, 5.0, 3.0, 15.0, 12.0])
    n = np.array([10.0, 10.0, 10.0, 15.0, 15.0, 15.0])
    codes = np.array([0, 0, 0, 1, 1, 1])
    rates = k / n

    def sums_of(kk: np.ndarray) -> np.ndarray:
        feat = stats._features(kk, n)
        return np.stack([np.bincount(codes, feat[:, f], minlength=2) for f in range(7)], 1)

    # an observed split in the middle of the law, so the share is neither 0 nor 1
    observed = stats.wald_statistic(sums_of(rates[[3, 0, 5, 2, 1, 4]] * n))
    every = np.array(
        [
            stats.wald_statistic(sums_of(rates[list(p)] * n))
            for p in itertools.permutations(range(6))
        ]
    )
    exact = float(np.mean(stats._at_least(every, observed)))
    assert 0.05 < exact < 0.95
    draws = 40_000
    rng = np.random.default_rng(1)
    p, _, how = stats._rates_among_places(k, n, codes, 2, observed, draws, rng, exact=False)
    assert how == "Monte Carlo, 40,000 draws"
    assert abs(p - exact) < 4 * math.sqrt(exact * (1 - exact) / draws)
    p, _, how = stats._rates_among_places(k, n, codes, 2, observed, draws, rng)
    assert how.startswith("exact") and p == pytest.approx(exact)


def _every_rate_arrangement(ka, na, kb, nb):  # type: ignore[no-untyped-def]
    """The p and smallest p of the trials' rates permuted among their places, over every
    one of the (m_a + m_b)! permutations."""
    import itertools

    k, n = np.r_[ka, kb], np.r_[na, nb]
    codes = np.r_[np.zeros(len(ka), int), np.ones(len(kb), int)]

    def stat(kk: np.ndarray) -> np.ndarray:
        feat = stats._features(kk, n)
        return stats.wald_statistic(
            np.stack([np.bincount(codes, feat[:, f], minlength=2) for f in range(7)], 1)
        )

    rates = k / n
    every = np.array([stat(rates[list(p)] * n) for p in itertools.permutations(range(len(k)))])
    top = every[np.lexsort((every[:, 1], every[:, 0]))[-1]]
    return (
        float(np.mean(stats._at_least(every, stat(k)))),
        float(np.mean(stats._at_least(every, top))),
    )


@pytest.mark.parametrize("m", [3, 4])
def test_no_spread_p_min_is_the_smallest_p_the_data_allow(m: int) -> None:
    """redteam21: the no-spread test reported p_min = 1/(draws + 1) (5e-4) where its trial
    part could never go below 0.1 (3 v 3) or 0.03 (4 v 4): a reader took "p = 0.1, p_min
    = 0.0005" for a test that had the resolution and found nothing. p and p_min are the
    exact ones of every permutation of the rates, enumerated; with too many arrangements
    to enumerate, p_min is estimated from the draws, between their floor and p."""
    ka, na = np.full(m, 20.0), np.full(m, 20.0)
    kb, nb = np.array([12.0, 9.0, 15.0, 10.0][:m]), np.full(m, 15.0)
    test = stats.two_sample_permutation_test(ka, na, kb, nb, 2000, 0, family=10)
    p, floor = _every_rate_arrangement(ka, na, kb, nb)
    assert test.p == pytest.approx(p) and test.p_min == pytest.approx(floor)
    assert floor >= 0.02  # never 1/2001
    big = stats.two_sample_permutation_test(
        np.full(40, 20.0), np.full(40, 20.0), np.resize(kb, 40), np.full(40, 15.0), 500, 0
    )
    assert "Monte Carlo, 500 draws)" in big.method and 1 / 501 <= big.p_min <= big.p
