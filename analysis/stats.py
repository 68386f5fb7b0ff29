"""Inference with statsmodels and numpy. Agent-rounds of one trial are not independent, so
every interval is trial-clustered, every comparison has a trial-clustered test beside the
pooled one, and models use GEE with trials as clusters.

Every method that can fail says so instead of printing a number it did not earn: a Wilson
bound never passes its estimate, a rate with no variation gets an interval on its trials
(not a zero-width bootstrap), a negative ICC is clamped to 0 with a note, a logistic
model with no more trials than coefficients is not estimable (said so), and one under
separation or non-convergence falls back to Firth's penalised likelihood with a
trial-cluster bootstrap, saying which was used.
"""

from __future__ import annotations

import functools
import math
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats as sps
from scipy.special import expit, gammaln
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_confint, proportion_effectsize

#: the population every rate is computed over unless a caller names another
HONEST = "honest"


def wilson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval, clamped so that ``lo <= k/n <= hi`` always holds (the
    statsmodels bound can land a hair past the estimate at k = 0 or k = n)."""
    if n <= 0:
        return (math.nan, math.nan)
    lo, hi = proportion_confint(k, n, alpha=alpha, method="wilson")
    p = k / n
    lo = 0.0 if k == 0 else min(float(lo), p)
    hi = 1.0 if k == n else max(float(hi), p)
    return max(lo, 0.0), min(hi, 1.0)


def wilson_rate(
    p: float, n: float, alpha: float = 0.05, quantile: float | None = None
) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``p`` observed over ``n`` units (``p n``
    need not be a whole number: a rate shared by ``n`` trials; ``n`` need not be whole
    either: an effective sample size), clamped to contain ``p``. ``quantile``: the
    critical value in place of the normal one (a t quantile)."""
    if n <= 0:
        return (math.nan, math.nan)
    z = float(sps.norm.ppf(1 - alpha / 2)) if quantile is None else quantile
    lo, hi = _wilson(p, n, z)
    return float(lo), float(hi)


def _wilson(p: Any, n: Any, z: Any) -> tuple[Any, Any]:
    """The Wilson score bounds of proportions ``p`` over ``n`` units (n > 0) at critical
    values ``z``, elementwise (numbers or arrays), clamped to contain ``p`` and to [0, 1]:
    the one formula of ``wilson_rate`` and ``design_effect_bounds``."""
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return np.maximum(0.0, np.minimum(centre - half, p)), np.minimum(
        1.0, np.maximum(centre + half, p)
    )


def shared_rate(k: np.ndarray, n: np.ndarray, rate: float) -> bool:
    """Whether every unit (a trial, a cluster) with an outcome has the pooled ``rate``: one
    unit, or none vary, so resampling the units cannot move the rate."""
    keep = n > 0
    return bool(np.allclose(k[keep] / n[keep], rate, rtol=0.0, atol=1e-12))


def error_bars(rate: Any, lo: Any, hi: Any) -> np.ndarray:
    """``yerr`` for matplotlib: distances below and above the estimate, never negative."""
    r = np.asarray(rate, dtype=float)
    below = np.clip(r - np.asarray(lo, dtype=float), 0.0, None)
    above = np.clip(np.asarray(hi, dtype=float) - r, 0.0, None)
    return np.asarray(np.nan_to_num(np.vstack([below, above])))


def population(df: pd.DataFrame, who: str = HONEST) -> pd.DataFrame:
    """The rows of the named population: honest agents (default), or ``all``."""
    if who == "all" or "role" not in df.columns:
        return df
    return df[df["role"] == who]


# -- trial-clustered intervals ------------------------------------------------------
def boot_weights(n_items: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` bootstrap resamples of ``n_items`` clusters as count weights (size x n)."""
    idx = rng.integers(0, n_items, size=(size, n_items))
    flat = (idx + n_items * np.arange(size)[:, None]).ravel()
    return np.bincount(flat, minlength=size * n_items).reshape(size, n_items).astype(float)


def cluster_rate_ci(
    k: npt.ArrayLike, n: npt.ArrayLike, alpha: float = 0.05
) -> tuple[float, float, str]:
    """Interval for the pooled rate ``r = sum(k) / sum(n)`` whose units are trials.

    - Some variation between trials: the Wilson interval over the design-effect sample
      size, with the t quantile of m - 1 degrees of freedom for m trials (``METHOD``). The
      trials' variance of r is the cluster-robust (ratio estimator) one,
      ``V = m / (m - 1) * sum((k - r n)^2) / sum(n)^2``; the effective n is
      ``r (1 - r) / V``, never more than ``sum(n)`` (a design effect of at least 1).
    - No variation at all (every trial 0 or every trial 1): V is 0, so the Wilson
      interval with one observation per trial (the most conservative design effect).
    - One trial: likewise the Wilson interval at its rate with one observation (its
      agent-rounds share its play: as independent draws, 19 of 20 gave [0.76, 0.99], and
      such intervals covered 0.43-0.61 at intra-trial correlation 0.3; redteam18).
    - No variation between trials (every trial the same rate strictly between 0 and 1, as
      a deterministic population gives): likewise the Wilson interval at that rate with one
      observation per trial, never a zero-width interval.
    The percentile trial bootstrap this replaced covered 0.76-0.82 at 3-4 trials (0.90 at
    10) in planted populations; this holds about 0.93 or more down to 3 trials for rates from
    0.05 to 0.95 with intra-trial correlation 0 to 0.3 (tests/test_stats.py measures it),
    except near 0 or 1 with strong correlation: at rate 0.05 or 0.95 and correlation 0.3,
    0.89-0.92 at 10-20 trials of 10-15 agent-rounds, 0.86 at 10 trials of 30 and 0.85 of
    60 (a Korn-Graubard Clopper-Pearson interval on the same effective n gains 1-2 points
    there, 5-10% wider; the README states it).
    The interval always contains the estimate. Returns (lo, hi, method).
    """
    kk = np.asarray(k, dtype=float)
    nn = np.asarray(n, dtype=float)
    keep = nn > 0
    k, n = kk[keep], nn[keep]
    trials = len(n)
    if trials == 0:
        return (math.nan, math.nan, "no data")
    rate = float(k.sum() / n.sum())
    if trials == 1:  # its agent-rounds are not independent draws: one observation
        # (first: a lone trial at 0 or 1 is named for its one trial, as every table and a
        # difference's arm name it; redteam rt29 F10 found both names for one interval)
        lo, hi = wilson_rate(rate, 1, alpha)
        return (lo, hi, ONE_TRIAL)
    if rate in (0.0, 1.0):
        lo, hi = wilson(int(round(rate * trials)), trials, alpha)
        return (lo, hi, "Wilson on trials (no variation)")
    if shared_rate(k, n, rate):  # every trial at the pooled rate
        lo, hi = wilson_rate(rate, trials, alpha)
        return (lo, hi, "Wilson on trials (no variation between trials)")
    lo, hi = design_effect_wilson(k, n, rate, alpha)
    return (lo, hi, METHOD)


#: how ``cluster_rate_ci`` names its interval for trials that vary
METHOD = "Wilson, design-effect n, t(trials - 1)"
#: ... and for one trial (whatever its rate)
ONE_TRIAL = "Wilson on trials (one trial)"


def design_effect_wilson(
    k: np.ndarray, n: np.ndarray, rate: float, alpha: float = 0.05
) -> tuple[float, float]:
    """``cluster_rate_ci``'s interval of the pooled ``rate`` of trials ``k``, ``n`` (each
    n > 0, at least two, not all at the rate): Wilson over the effective sample size,
    t quantile of trials - 1 degrees of freedom."""
    trials = len(n)
    total = float(n.sum())
    var = trials / (trials - 1) * float(((k - rate * n) ** 2).sum()) / total**2
    t = float(sps.t.ppf(1 - alpha / 2, trials - 1))
    lo, hi = design_effect_bounds(rate, var, total, t)
    return float(lo), float(hi)


def design_effect_bounds(rate: Any, var: Any, total: Any, quantile: Any) -> tuple[Any, Any]:
    """The Wilson bounds of pooled rates over their design-effect sample size, elementwise
    (numbers or arrays): the effective n is ``rate (1 - rate) / var`` for a cluster-robust
    variance ``var`` of the rate, never more than ``total`` (its agent-rounds; ``total``
    itself where ``var`` is 0 or unknown), at critical values ``quantile`` (a t quantile).
    ``design_effect_wilson`` and the archetypes' one-sided bounds are made by it."""
    with np.errstate(invalid="ignore", divide="ignore"):
        effective = np.minimum(np.where(var > 0, rate * (1 - rate) / var, total), total)
        return _wilson(rate, effective, quantile)


def trial_counts(df: pd.DataFrame, keys: list[str], outcome: str) -> pd.DataFrame:
    """Per ``keys`` and trial: k (sum of the 0/1 outcome) and n (rows with an outcome)."""
    data = df.dropna(subset=[outcome])
    return (
        data.groupby([*keys, "trial_id"], observed=True)[outcome]
        .agg(k="sum", n="count")
        .reset_index()
    )


def rate_table(
    df: pd.DataFrame, keys: list[str], outcome: str = "stag", prefix: str = ""
) -> pd.DataFrame:
    """Pooled rate of a 0/1 ``outcome`` per ``keys``, with n, trials and a trial-clustered
    95% interval. ``df`` is already the population the rate is over."""
    return rate_table_counts(trial_counts(df, keys, outcome), keys, prefix)


def rate_table_counts(counts: pd.DataFrame, keys: list[str], prefix: str = "") -> pd.DataFrame:
    """``rate_table`` on per-trial counts already made: one row per ``keys`` and trial with
    ``k`` (successes) and ``n`` (outcomes, at least one), as ``trial_counts`` gives them
    (sorted by ``keys`` and trial). Each group's interval (``cluster_rate_ci``) is a
    function of its own counts: the same trials get the same interval in every table."""
    rows = []
    grouped = counts.groupby(keys, observed=True, sort=True) if keys else [((), counts)]
    for key, g in grouped:
        k, n = g["k"].to_numpy(float), g["n"].to_numpy(float)
        lo, hi, method = cluster_rate_ci(k, n)
        key = key if isinstance(key, tuple) else (key,)
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                f"{prefix}rate": k.sum() / n.sum() if n.sum() else math.nan,
                f"{prefix}ci_lo": lo,
                f"{prefix}ci_hi": hi,
                f"{prefix}n": int(n.sum()),
                f"{prefix}trials": len(g),
                f"{prefix}ci": method,
            }
        )
    return pd.DataFrame(rows)


def mean_ci(values: npt.ArrayLike, clusters: npt.ArrayLike) -> tuple[float, float, float]:
    """Mean of ``values`` with a trial-clustered interval (clusters: trial ids): the mean
    plus or minus the t quantile of trials - 1 degrees of freedom times the cluster-robust
    (ratio estimator) standard error. No interval (NaN) from fewer than two trials, or
    values without spread between trials. On planted payoffs (3-20 trials, intra-trial
    correlation 0-0.3) it covers 0.88-0.96 where the percentile trial bootstrap it replaced
    covered 0.73-0.93 (tests/test_stats.py measures it)."""
    v = np.asarray(values, dtype=float)
    ok = ~np.isnan(v)
    v, c = v[ok], np.asarray(clusters)[ok]
    if len(v) == 0:
        return (math.nan, math.nan, math.nan)
    codes, _ = pd.factorize(c)
    s = np.bincount(codes, weights=v)
    m = np.bincount(codes).astype(float)
    return _mean_ci_sums(s, m, not np.allclose(v, v[0]))


def _mean_ci_sums(s: np.ndarray, m: np.ndarray, spread: bool) -> tuple[float, float, float]:
    """``mean_ci`` from each trial's sum ``s`` and count ``m`` of values (trials in the
    order they first appear), ``spread``: whether the values are not all close to the
    first one."""
    mean = float(s.sum() / m.sum())
    if len(s) < 2 or not spread:
        return (mean, math.nan, math.nan)  # no interval is earned by one trial or no spread
    # values that vary within trials but not between them (every trial's mean the same,
    # a deterministic population's payoffs): no interval rather than a zero-width one
    means = s / m
    if float(np.ptp(means)) <= 1e-12 * max(1.0, abs(mean)):
        return (mean, math.nan, math.nan)
    trials = len(s)
    resid = s - mean * m
    se = math.sqrt(trials / (trials - 1) * float((resid**2).sum())) / float(m.sum())
    half = float(sps.t.ppf(0.975, trials - 1)) * se
    return (mean, mean - half, mean + half)


def group_mean_cis(
    values: npt.ArrayLike,
    groups: npt.ArrayLike,
    clusters: npt.ArrayLike,
    order: list[int],
) -> list[tuple[float, float, float, int]]:
    """``mean_ci`` of each group's values and n (its values that are not NaN), for the
    groups ``order`` (codes of ``groups``; a negative code is no group) in that order:
    what calling ``mean_ci`` on each group's rows (in row order) gives, with one pass over
    the rows instead of one per group.
    ``clusters``: each row's trial, as whole-number codes."""
    v = np.asarray(values, dtype=float)
    g = np.asarray(groups, dtype=np.int64)
    t = np.asarray(clusters, dtype=np.int64)
    rows = np.flatnonzero(~np.isnan(v) & (g >= 0))
    v, g, t = v[rows], g[rows], t[rows]
    n_groups = int(max(order, default=-1)) + 1
    n_groups = max(n_groups, int(g.max()) + 1 if len(g) else 0)
    # each (group, trial) pair numbered by where it first appears: a group's trials in the
    # order that factorizing its own rows gives them
    pair, firsts = pd.factorize(g * (int(t.max()) + 1 if len(t) else 1) + t)
    s = np.bincount(pair, weights=v)  # summed in row order, as one group's bincount sums
    m = np.bincount(pair).astype(float)
    first_row = np.full(len(firsts), len(v), dtype=np.int64)
    np.minimum.at(first_row, pair, np.arange(len(v)))
    pair_group = g[first_row]
    by_group = np.argsort(pair_group, kind="stable")  # pairs by group, in first-seen order
    bounds = np.searchsorted(pair_group[by_group], np.arange(n_groups + 1))
    # np.allclose(v, v[0]) per group: every value close to its group's first value
    group_first = np.full(n_groups, len(v), dtype=np.int64)
    np.minimum.at(group_first, g, np.arange(len(v)))
    first_value = v[np.minimum(group_first, max(len(v) - 1, 0))] if len(v) else v
    far = ~np.isclose(v, first_value[g]) if len(v) else np.zeros(0, dtype=bool)
    spread = np.bincount(g[far], minlength=n_groups) > 0
    count = np.bincount(g, minlength=n_groups)
    out = []
    for code in order:
        if code < 0 or code >= n_groups or count[code] == 0:
            out.append((math.nan, math.nan, math.nan, 0))
            continue
        pairs = by_group[bounds[code] : bounds[code + 1]]
        mean, lo, hi = _mean_ci_sums(s[pairs], m[pairs], bool(spread[code]))
        out.append((mean, lo, hi, int(count[code])))
    return out


# -- tests ----------------------------------------------------------------------------
@dataclass
class Comparison:
    factor: str
    a: str
    b: str
    rate_a: float
    rate_b: float
    n_a: int
    n_b: int
    trials_a: int
    trials_b: int
    fisher_p: float
    chi2_p: float
    permutation_p: float
    diff: float
    diff_ci: tuple[float, float]
    population: str = HONEST
    #: how permutation_p was obtained (``PermutationP.describe``) and the smallest p it
    #: could have been (its resolution)
    permutation_method: str = ""
    permutation_min_p: float = math.nan
    #: how diff_ci was made (``difference_ci``)
    diff_ci_method: str = ""

    def as_dict(self) -> dict[str, object]:
        d = self.__dict__.copy()
        d["diff_lo"], d["diff_hi"] = d.pop("diff_ci")
        return d


def _trial_rates(df: pd.DataFrame, outcome: str) -> pd.DataFrame:
    return (
        df.dropna(subset=[outcome])
        .groupby("trial_id", observed=True)[outcome]
        .agg(k="sum", n="count")
        .reset_index()
    )


#: from this many trials on, resampling draws how many trials of each kind (k, n) go where
#: (multinomial / multivariate hypergeometric counts): the same distribution as drawing
#: the trials one by one, at a cost that grows with the kinds, not the trials
KINDS_FROM = 1000


def row_kinds(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The distinct rows of a pool of clusters (one row each) and how many clusters have
    each, when the pool is large (``KINDS_FROM``) and has at most a quarter as many kinds
    as clusters; ``None`` otherwise (resample the clusters one by one)."""
    if len(rows) < KINDS_FROM:
        return None
    packed = _packed_rows(rows)
    if packed is not None:  # one integer per row, in the rows' lexicographic order
        keys, counts = np.unique(packed[0], return_counts=True)
        if len(keys) * 4 > len(rows):
            return None
        return _unpacked(keys, packed[1], rows.dtype), counts.astype(np.int64)
    kinds, counts = np.unique(rows, axis=0, return_counts=True)
    if len(kinds) * 4 > len(rows):
        return None
    return kinds, counts.astype(np.int64)


def _packed_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Rows of small whole numbers (counts) as one int64 each, ordered as the rows are
    lexicographically, and the base of each column: ``np.unique`` on them is what
    ``np.unique(rows, axis=0)`` gives, many times faster. ``None`` for other rows
    (fractions, negatives, negative zeros, NaN, or too wide to pack)."""
    if rows.ndim != 2 or rows.shape[1] == 0 or rows.dtype.kind not in "fiu":
        return None
    ints = rows.astype(np.int64)
    if not np.array_equal(ints, rows) or (ints < 0).any():
        return None
    if rows.dtype.kind == "f" and np.signbit(rows).any():
        return None
    bases = ints.max(axis=0) + 1
    if float(np.prod(bases.astype(float))) >= 2.0**62:
        return None
    packed = np.zeros(len(rows), dtype=np.int64)
    for j in range(rows.shape[1]):
        packed = packed * bases[j] + ints[:, j]
    return packed, bases


def _unpacked(keys: np.ndarray, bases: np.ndarray, dtype: np.dtype[Any]) -> np.ndarray:
    cols = []
    rest = keys.copy()
    for base in bases[::-1]:
        cols.append(rest % base)
        rest //= base
    return np.column_stack(cols[::-1]).astype(dtype)


def trial_kinds(k: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``row_kinds`` of trials (k of n each): the distinct k, n and their counts."""
    found = row_kinds(np.stack([k, n], axis=1))
    if found is None:
        return None
    kinds, counts = found
    return kinds[:, 0], kinds[:, 1], counts


#: a test's default level, and the one a family's permutation count is planned for
ALPHA = 0.05
#: the fewest permutations the report's Comparisons draw per test (``--n-boot`` more)
COMPARISON_PERMUTATIONS = 1000
#: enumerate every distinct split of the trials (counted by trial kinds) up to this many
EXACT_MAX = 20_000
#: a Monte Carlo p near its floor draws more permutations (Besag & Clifford's sequential
#: scheme) until this many permutations are at least as extreme as the observed split ...
SEQUENTIAL_HITS = 10
#: ... or until the floor 1/(N+1) is this many times below alpha / family
FLOOR_MARGIN = 10
#: and never more than this many trial draws (permutations x trials) in one test
DRAW_BUDGET = 200_000_000


def _floor_draws(family: int, alpha: float) -> int:
    """Draws whose Monte Carlo floor 1/(N+1) is ``FLOOR_MARGIN`` times below alpha /
    ``family``, Holm's strictest step."""
    return math.ceil(FLOOR_MARGIN * max(1, family) / alpha)


@dataclass(frozen=True)
class PermutationP:
    """A permutation p-value and how it was obtained: ``method`` is ``exact`` (every
    distinct split of the trials weighed by its probability; ``splits`` of them, counted
    as labelled splits), ``monte carlo`` (``draws`` random permutations), ``no variation``
    (every trial has the same rate: every split gives the same statistic, p = 1) or
    ``no test`` (fewer than two groups with data: p is NaN). ``p_min`` is the smallest p
    the method could have returned: the resolution to read p against."""

    p: float
    method: str
    draws: int = 0
    splits: float = 0.0
    p_min: float = math.nan

    def text(self) -> str:
        """``p = x``, or ``p <= x`` at a Monte Carlo floor (``p_text``)."""
        return p_text(self.p, self.p_min, self.method)

    def describe(self) -> str:
        if self.method == "exact":
            return f"exact ({_count(self.splits)} splits)"
        if self.method == "monte carlo":
            return f"Monte Carlo ({self.draws:,} permutations)"
        return self.method


def p_text(p: float, p_min: float, method: str) -> str:
    """How a permutation p reads: ``p = x``; but ``p <= x`` where a test that draws
    permutations at random (Monte Carlo, alone or in the larger-p test) gave the smallest p
    it can, 1/(draws + 1): no draw was as extreme as the data, and the true p may be
    anywhere below (redteam rt29 F9: 1/501 printed as "p = 0.002"). An exact p at its
    smallest is exact, and reads ``p = x``."""
    drawn = method not in ("exact", "no variation", "no test")
    if drawn and math.isfinite(p_min) and p <= p_min * (1 + 1e-9):
        return f"p <= {p:.3g} (the smallest p the test can give)"
    return f"p = {p:.3g}"


def _count(x: float) -> str:
    return f"{x:,.0f}" if x < 1e12 else f"{x:.3g}"


#: per-trial columns the statistic sums by group: k, n, e, e*e, e*n, n*n, 1, with
#: e = k - p0 n centred on the pooled rate p0 (fewer cancellations in the variances)
_K, _N, _E, _EE, _EN, _NN, _M = range(7)


def _features(k: np.ndarray, n: np.ndarray) -> np.ndarray:
    e = k - (k.sum() / n.sum()) * n
    return np.column_stack([k, n, e, e * e, e * n, n * n, np.ones_like(k)])


def _spread(sums: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From group sums of the trial features: each group's rate less the centre of the
    features (``d``), its sum of squared trial residuals ``sum (k - rate n)^2`` (``s2``),
    and whether its trials have no spread about its rate (``zero``: one trial, all 0, all
    1 or every trial alike; up to rounding). Groups with no agent-rounds: never zero."""
    _, n, e, ee, en, nn, _ = np.moveaxis(sums, -1, 0)
    has = n > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.where(has, e / n, 0.0)  # rate - p0
        s2 = ee - 2 * d * en + d * d * nn
        zero = has & (s2 <= 1e-9 * (ee + d * d * nn))
    return d, s2, zero


def wald_statistic(sums: np.ndarray) -> np.ndarray:
    """The heteroscedastic Wald chi-square of equal pooled rates across groups, from each
    group's sums of the trial features (``sums[..., group, feature]``): sum over groups of
    (rate - weighted mean rate)^2 / V, V the trial-clustered (ratio-estimator) variance of
    the group's pooled rate, m/(m-1) sum_i (k_i - rate n_i)^2 / N^2 over its m trials. For
    two groups it is the square of (rate_a - rate_b) / sqrt(V_a + V_b).

    A group whose trials all have the same rate (one trial, all 0, all 1, or every trial
    alike) has V = 0: the statistic is then its limit as V -> 0, ordered in two parts
    (``[..., 0]`` first, then ``[..., 1]``). Part 0, D, is how far the zero-variance groups'
    rates disagree (sum of N (rate - their N-weighted mean rate)^2 over them; exactly 0 when
    they agree or there are fewer than two): any D > 0 makes the Wald statistic infinite,
    and a larger D is more extreme (many fixed groups at many rates beat two that happen to
    differ). Part 1 is the Wald statistic with the zero-variance groups' rates taken as
    known (the others measured against their mean rate; with none, the usual statistic;
    all of them and none other: 0). Groups with no agent-rounds are left out."""
    k, n, e, ee, en, nn, m = np.moveaxis(sums, -1, 0)
    has = n > 0
    d, s2, zero = _spread(sums)
    with np.errstate(invalid="ignore", divide="ignore"):
        v = np.where(m > 1, m / (m - 1), 1.0) * s2 / (n * n)
        w = np.where(has & ~zero, 1.0 / v, 0.0)
        nz = zero.sum(axis=-1)
        ref = np.argmax(zero, axis=-1)[..., None]  # the first zero-variance group
        k_ref = np.take_along_axis(k, ref, axis=-1)
        n_ref = np.take_along_axis(n, ref, axis=-1)
        agree = np.where(zero, k * n_ref == k_ref * n, True).all(axis=-1)  # exact counts
        nz_n = np.where(zero, n, 0.0)
        fixed = (nz_n * d).sum(axis=-1) / np.where(nz > 0, nz_n.sum(axis=-1), 1.0)
        spread = (nz_n * (d - fixed[..., None]) ** 2).sum(axis=-1)
        centre = np.where(
            nz > 0,
            fixed,
            (w * d).sum(axis=-1) / np.where(w.sum(axis=-1) > 0, w.sum(axis=-1), 1.0),
        )
        stat = (w * (d - centre[..., None]) ** 2).sum(axis=-1)
    return np.stack([np.where(agree, 0.0, spread), stat], axis=-1)


def _at_least(stats_: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Permutation statistics (``wald_statistic``'s two parts, compared in order) at least
    as extreme as the observed one, ties included up to rounding (the same split summed in
    another order)."""

    def tol(x: float) -> float:
        return 1e-9 * abs(x) + 1e-12

    d, w = stats_[..., 0], stats_[..., 1]
    d_obs, w_obs = float(observed[0]), float(observed[1])
    tie = np.abs(d - d_obs) <= tol(d_obs)
    return np.asarray((d > d_obs + tol(d_obs)) | (tie & (w >= w_obs - tol(w_obs))))


def _most_extreme(stats_: np.ndarray) -> np.ndarray:
    """The most extreme of ``wald_statistic``'s values (its two parts compared in order)."""
    return np.asarray(stats_[np.lexsort((stats_[:, 1], stats_[:, 0]))[-1]])


def _exact_p(stats_: np.ndarray, prob: np.ndarray, observed: np.ndarray) -> tuple[float, float]:
    """An exact permutation test's p (the probability of the arrangements at least as
    extreme as ``observed``) and the smallest p it could give (that of the most extreme
    ones), from every arrangement's statistic and probability; p never below the latter."""
    p = float(prob[_at_least(stats_, observed)].sum())
    p_min = float(prob[_at_least(stats_, _most_extreme(stats_))].sum())
    return min(1.0, max(p, p_min)), p_min


def _two_group_tables(colours: np.ndarray, size: int) -> float:
    """How many distinct splits of trials of these kinds (``colours`` trials of each) put
    ``size`` of them in the first group: the coefficient of z^size in the product over
    kinds of (1 + z + ... + z^c), by running sums (float: only compared with a cap)."""
    ways = np.zeros(size + 1)
    ways[0] = 1.0
    for c in colours:
        run = np.cumsum(ways)
        ways = run - np.r_[np.zeros(min(int(c) + 1, size + 1)), run[: max(0, size - int(c))]]
    return float(ways[size])


def _exact_tables(
    feat: np.ndarray,
    codes: np.ndarray,
    g: int,
    cap: int,
    kind_feats: Callable[[np.ndarray], Sequence[np.ndarray]] | None = None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Every distinct assignment of the trials to the groups (group sizes fixed), counted
    by trial kinds (k, n): how many trials of each kind go to each group. Returns each
    assignment's group sums of the features and its probability under a uniform random
    permutation (multivariate hypergeometric), or ``None`` past ``cap`` assignments. Every
    partial assignment kept can be completed, so the count never passes the final one.
    ``kind_feats``: a kind's features in each group (groups x kinds x features) from the
    kinds' rows of ``feat``, where they differ by group (default: its row, everywhere)."""
    _, first, colours = np.unique(feat[:, :2], axis=0, return_index=True, return_counts=True)
    kind_feat = feat[first]
    kinds = len(colours)
    cap = min(cap, 20_000_000 // (kinds * g))  # the tables kept: states x kinds x groups
    sizes = np.bincount(codes, minlength=g).astype(np.int64)
    if g == 2 and _two_group_tables(colours, int(sizes[0])) > cap:
        return None
    room = sizes[None, :].copy()
    logw = np.zeros(1)
    log_fact = gammaln(np.arange(int(colours.max()) + 1) + 1.0)
    steps: list[tuple[np.ndarray | None, np.ndarray, int, int]] = []  # parent, x, kind, group
    for t in range(kinds):
        left = np.full(len(room), colours[t], dtype=np.int64)
        for j in range(g):
            parent = None
            if j == g - 1:
                x = left
            else:
                lo = np.maximum(0, left - room[:, j + 1 :].sum(axis=1))
                hi = np.minimum(left, room[:, j])
                options = hi - lo + 1
                total = int(options.sum())
                if total > cap:
                    return None
                parent = np.repeat(np.arange(len(room)), options)
                starts = np.cumsum(options) - options
                x = lo[parent] + np.arange(total) - starts[parent]
                room, logw, left = room[parent], logw[parent], left[parent]
            room[:, j] -= x
            left = left - x
            logw = logw - log_fact[x]
            steps.append((parent, x, t, j))
    table = np.zeros((len(room), kinds, g))
    at = np.arange(len(room))
    for parent, x, t, j in reversed(steps):  # each final state's choices, last to first
        table[:, t, j] = x[at]
        if parent is not None:
            at = parent[at]
    logw += float(gammaln(colours + 1.0).sum())
    logw -= float(gammaln(sizes.sum() + 1.0) - gammaln(sizes + 1.0).sum())
    per = kind_feats(kind_feat) if kind_feats is not None else [kind_feat] * g
    sums = np.stack([table[:, :, j] @ per[j] for j in range(g)], axis=1)
    return sums, np.exp(logw)


def _smallest(keys: np.ndarray, m: int) -> np.ndarray:
    """Per row of ``keys``, 1.0 where the key is among the row's ``m`` smallest, else 0.0
    (a uniform random m-subset per row, for keys drawn uniformly): a partial sort (a third
    of a full sort's time); a row whose m-th smallest key is tied (never, in practice)
    takes its first m by a stable sort instead."""
    if m <= 0 or m >= keys.shape[1]:
        return np.full(keys.shape, float(m > 0))
    mask = keys <= np.partition(keys, m - 1, axis=1)[:, m - 1 : m]
    tied = np.flatnonzero(mask.sum(axis=1) != m)
    if len(tied):
        order = np.argsort(keys[tied], axis=1, kind="stable")[:, :m]
        mask[tied] = False
        mask[tied[:, None], order] = True
    return mask.astype(float)


def _deal(
    colours: np.ndarray, sizes: np.ndarray, size: int, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """``size`` uniform random deals of items of kinds (``colours`` of each) into groups
    of ``sizes``: each group's count of each kind (size x kinds), group by group, kind by
    kind (multivariate hypergeometric, sequentially); the last group takes what is left."""
    left = np.tile(np.asarray(colours, dtype=np.int64), (size, 1))
    for j in range(len(sizes) - 1):
        took = np.zeros_like(left)
        need = np.full(size, int(sizes[j]), dtype=np.int64)
        rest = left.sum(axis=1)
        for t in range(left.shape[1]):
            rest = rest - left[:, t]
            if need.any():
                took[:, t] = rng.hypergeometric(left[:, t], rest, need)
                need -= took[:, t]
        left = left - took
        yield took
    yield left


def _random_sums(
    feat: np.ndarray,
    codes: np.ndarray,
    g: int,
    size: int,
    rng: np.random.Generator,
    kinds: tuple[np.ndarray, np.ndarray] | None,
) -> np.ndarray:
    """Group sums of the features under ``size`` uniform random permutations of the
    trials' group labels (size x groups x features)."""
    sizes = np.bincount(codes, minlength=g)
    total = feat.sum(axis=0)
    if kinds is not None:  # how many trials of each kind go where: the same law
        kind_feat, colours = kinds
        if g == 2:
            draws = rng.multivariate_hypergeometric(colours, int(sizes[0]), size=size)
            a = draws @ kind_feat
            return np.stack([a, total - a], axis=1)
        out = np.zeros((size, g, feat.shape[1]))
        for j, took in enumerate(_deal(colours, sizes, size, rng)):
            out[:, j, :] = took @ kind_feat
        return out
    if g == 2:  # the trials with the sizes[0] lowest of uniform random keys: group 0
        a = _smallest(rng.random((size, len(codes))), int(sizes[0])) @ feat
        return np.stack([a, total - a], axis=1)
    labels = codes[np.argsort(rng.random((size, len(codes))), axis=1)]
    flat = (labels + g * np.arange(size)[:, None]).ravel()
    cols = [
        np.bincount(flat, weights=np.tile(feat[:, f], size), minlength=g * size)
        for f in range(feat.shape[1])
    ]
    return np.stack(cols, axis=1).reshape(size, g, feat.shape[1])


def group_permutation_test(
    k: npt.ArrayLike,
    n: npt.ArrayLike,
    groups: npt.ArrayLike,
    n_perm: int = 1000,
    rng: np.random.Generator | int = 0,
    family: int = 1,
    alpha: float = ALPHA,
) -> PermutationP:
    """Are the pooled rates (sum k / sum n) of the groups equal? Each trial (k successes
    of n) keeps its outcomes and whole trials are permuted between groups, group sizes
    fixed; the statistic is the studentized ``wald_statistic`` (each group's own
    trial-clustered variance), so the test is exact when trials are exchangeable and stays
    valid asymptotically when they are not: groups whose trials differ in size or spread
    (Janssen 1997; Chung & Romano 2013). Permuting a raw difference instead rejects a true
    null far too often when one group's trials are much larger than another's.

    The p-value is exact (every distinct split, counted by trial kinds) when there are at
    most ``EXACT_MAX`` of them; otherwise Monte Carlo, (hits + 1) / (n_perm + 1) over
    ``n_perm`` permutations. Where p will be Holm-adjusted over ``family`` tests and the
    Monte Carlo floor 1/(n_perm+1) would not reach alpha / family, a p that lands near its
    floor (fewer than ``SEQUENTIAL_HITS`` hits) goes on drawing, Besag-Clifford style,
    until that many hits (p = hits / draws) or until the floor is ``FLOOR_MARGIN`` times
    below alpha / family (within ``DRAW_BUDGET``); the combined p is still a valid p-value.
    Trials with no agent-rounds carry no rate and are left out.

    A group whose trials have no spread (one trial, all 0, all 1, every trial alike) has
    no variance to studentize by, and whole trials permuted then mostly measure how the
    trials' sizes fall between the groups: arms whose trials differ in size (``none`` vs
    ``byzantine``, whose honest seats differ) gave p = 1e-5 for one hare in 150 agent-rounds,
    and rejected a true null at 0.05 in 0.3-0.9 of such data sets (redteam20). Such a test
    (some groups with no spread, others with some) is ``_no_spread_test``'s instead."""
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    kv = np.asarray(k, dtype=float)
    nv = np.asarray(n, dtype=float)
    keep = nv > 0
    codes, uniques = pd.factorize(np.asarray(groups)[keep])
    kv, nv = kv[keep], nv[keep]
    g = len(uniques)
    if g < 2:
        return PermutationP(math.nan, "no test")
    feat = _features(kv, nv)
    log_splits = math.lgamma(len(kv) + 1) - sum(math.lgamma(s + 1) for s in np.bincount(codes))
    splits = float(round(math.exp(log_splits))) if log_splits < 700 else math.inf
    if (kv * nv[0] == kv[0] * nv).all():  # every trial has the same rate
        return PermutationP(1.0, "no variation", splits=splits, p_min=1.0)
    observed_sums = np.stack(
        [np.bincount(codes, weights=feat[:, f], minlength=g) for f in range(feat.shape[1])],
        axis=1,
    )
    observed = wald_statistic(observed_sums)
    flat = _spread(observed_sums)[2]
    if flat.any() and not flat.all():  # all flat: the split's D orders them (sizes cannot)
        return _no_spread_test(kv, nv, codes, g, observed, n_perm, gen, family, alpha, splits)
    cap = min(EXACT_MAX, 4_000_000 // (g * feat.shape[1] + 2))
    exact = _exact_tables(feat, codes, g, cap)
    if exact is not None:
        sums, prob = exact
        p, p_min = _exact_p(wald_statistic(sums), prob, observed)
        return PermutationP(p, "exact", splits=splits, p_min=p_min)
    kinds = None
    found = trial_kinds(kv, nv)
    if found is not None and len(found[0]) * g <= 50_000:
        _, first, colours = np.unique(
            np.stack([kv, nv], axis=1), axis=0, return_index=True, return_counts=True
        )
        kinds = (feat[first], colours.astype(np.int64))
    n_perm = max(1, int(n_perm))
    n_max = max(n_perm, _floor_draws(family, alpha))
    n_max = min(n_max, max(n_perm, DRAW_BUDGET // len(kv)))
    # bounded memory: a batch holds (permutations x trials) labels, or x kinds x groups
    width = len(kv) if kinds is None else len(kinds[1]) + g * feat.shape[1]
    batch = max(1, min(100_000, 2_000_000 // width))

    def hits(size: int) -> np.ndarray:
        parts = []
        for start in range(0, size, batch):
            sums = _random_sums(feat, codes, g, min(batch, size - start), gen, kinds)
            parts.append(_at_least(wald_statistic(sums), observed))
        return np.concatenate(parts)

    extreme = int(hits(n_perm).sum())
    if extreme >= SEQUENTIAL_HITS or n_max <= n_perm:
        return PermutationP(
            (extreme + 1) / (n_perm + 1), "monte carlo", n_perm, splits, 1 / (n_perm + 1)
        )
    drawn = n_perm
    while drawn < n_max:  # Besag & Clifford (1991): stop at the h-th hit
        more = hits(min(max(drawn, batch), n_max - drawn))
        running = extreme + np.cumsum(more)
        if running[-1] >= SEQUENTIAL_HITS:
            at = drawn + int(np.argmax(running >= SEQUENTIAL_HITS)) + 1
            return PermutationP(SEQUENTIAL_HITS / at, "monte carlo", at, splits, 1 / (n_max + 1))
        extreme, drawn = int(running[-1]), drawn + len(more)
    return PermutationP((extreme + 1) / (n_max + 1), "monte carlo", n_max, splits, 1 / (n_max + 1))


#: the most draws of each of ``_no_spread_test``'s two tests
NO_SPREAD_DRAWS = 2_000_000
#: how ``group_permutation_test`` names the test of groups one of which has no spread
NO_SPREAD_TEST = "larger p of two tests"
NO_SPREAD = (
    NO_SPREAD_TEST + ", as a group's trials have no spread: trial rates permuted among "
    "the trials' places ({rates}), and agent-rounds as independent (Monte Carlo, {draws:,} "
    "draws)"
)


def _no_spread_test(
    k: np.ndarray,
    n: np.ndarray,
    codes: np.ndarray,
    g: int,
    observed: np.ndarray,
    n_perm: int,
    gen: np.random.Generator,
    family: int,
    alpha: float,
    splits: float,
) -> PermutationP:
    """``group_permutation_test`` where a group's trials have no spread: the larger p of
    two tests, so it is valid wherever either is (the larger of two p-values is at most
    alpha only where both are):

    - trial rates permuted among the trials' places, each place keeping its agent-rounds
      (rate x its n successes) and its group, by the same studentized statistic: exact
      when the trials' rates are exchangeable whatever their sizes (strong correlation
      within trials), and blind to how the sizes fall between the groups;
    - the groups' successes as draws of agent-rounds without replacement (multivariate
      hypergeometric, Pearson's statistic; Fisher's test for two groups): exact when
      agent-rounds are independent (no correlation within trials), where rare events in
      trials of differing sizes make the first too eager.

    Over 17 planted-null designs (rates 0.02 to 0.99, correlation 0 to 0.5, 2 to 4 groups
    of 3 to 20 trials of 5 to 40 agent-rounds; redteam20 and redteam21) the whole test
    rejected at 0.05 in 0.003-0.055 of data sets (whole trials permuted: up to 0.143).
    Among the data sets that took this test (an arm happened to have no spread) it
    rejected in 0.00-0.04 of them where either assumption roughly holds, but in 0.12-0.32
    where moderate or strong correlation meets very unequal trial sizes (10 v 30, 40 v 8
    agent-rounds), as neither then does; such a row's difference interval mostly holds 0,
    and the comparisons' note says where it and p disagree.
    The price: trials are the unit, so all hare in 2 trials of 20 gives p near 0.5.
    Each draws ``n_perm``, or enough that its floor is ``FLOOR_MARGIN`` times below
    alpha / ``family`` for Holm (at most ``NO_SPREAD_DRAWS``); both are drawn by kinds of
    trial, at a cost that does not grow with the trials."""
    draws = max(1, n_perm, min(_floor_draws(family, alpha), NO_SPREAD_DRAWS))
    p_rates, min_rates, how = _rates_among_places(k, n, codes, g, observed, draws, gen)
    p_rounds = 1.0
    whole = np.round(k)
    if np.allclose(k, whole) and np.allclose(n, np.round(n)):  # counts: rounds can be drawn
        size_g = np.bincount(codes, weights=np.round(n), minlength=g).astype(np.int64)
        got = np.bincount(codes, weights=whole, minlength=g)
        total = int(got.sum())

        def pearson(x: np.ndarray) -> np.ndarray:
            return np.asarray((((x - total * size_g / size_g.sum()) ** 2) / size_g).sum(axis=-1))

        seen = float(pearson(got))
        drawn = gen.multivariate_hypergeometric(size_g, total, size=draws)
        over = int((pearson(drawn) >= seen - 1e-9 * abs(seen) - 1e-12).sum())
        p_rounds = (over + 1) / (draws + 1)
    # the smallest p: the rates' (exact, or estimated from the draws) and the rounds'
    # Monte Carlo floor, whichever is larger (p is the larger of the two tests' p)
    return PermutationP(
        max(p_rates, p_rounds),
        NO_SPREAD.format(rates=how, draws=draws),
        draws,
        splits,
        min(1.0, max(min_rates, 1 / (draws + 1))),
    )


def _rates_among_places(
    k: np.ndarray,
    n: np.ndarray,
    codes: np.ndarray,
    g: int,
    observed: np.ndarray,
    draws: int,
    gen: np.random.Generator,
    exact: bool = True,
) -> tuple[float, float, str]:
    """The p of the trials' rates permuted among their places (a place keeps its group and
    its n; a rate r there counts r n successes) by ``wald_statistic`` against ``observed``,
    the smallest p it could give, and how it was made. By kinds: places of one group and
    size are alike, and so are equal rates, so a permutation is how many rates of each kind
    go to each kind of place (multivariate hypergeometric). Exact over every such
    arrangement when there are at most ``EXACT_MAX`` of them (its smallest p the share of
    the most extreme ones); otherwise ``draws`` random ones, kind by kind, at a cost that
    does not grow with the trials, the smallest p then estimated by the share of draws as
    extreme as the most extreme arrangement drawn (or the observed one). ``exact=False``:
    drawn whatever their number."""
    rates = k / n
    values, colours = np.unique(rates, return_counts=True)
    places, counts = np.unique(np.stack([codes, n], axis=1), axis=0, return_counts=True)
    p0 = float(k.sum() / n.sum())
    onehot = np.zeros((len(places), g))
    onehot[np.arange(len(places)), places[:, 0].astype(np.int64)] = 1.0

    def at(vals: np.ndarray, size: float) -> np.ndarray:  # rates' features at a place
        kk = vals * size
        e = kk - p0 * size
        same = np.full_like(kk, size)
        return np.stack([kk, same, e, e * e, e * size, same * size, np.ones_like(kk)], 1)

    feats = [at(values, float(size)) for _, size in places]
    # exact: the rates as "trials" of kind (rate, 0) dealt to the kinds of place
    rows = np.column_stack([rates, np.zeros((len(rates), 6))])
    slots = np.repeat(np.arange(len(places)), counts)
    cap = min(EXACT_MAX, 4_000_000 // (len(places) * 7 + 2))
    every = (
        _exact_tables(
            rows,
            slots,
            len(places),
            cap,
            lambda kinds: [at(kinds[:, 0], float(s)) for _, s in places],
        )
        if exact
        else None
    )
    if every is not None:
        sums, prob = every
        p, p_min = _exact_p(wald_statistic(np.einsum("spf,pg->sgf", sums, onehot)), prob, observed)
        return p, p_min, f"exact, {len(prob):,} arrangements"
    batch = max(1, min(draws, 2_000_000 // (len(values) + 7 * g)))
    stats_: list[np.ndarray] = []
    for start in range(0, draws, batch):
        size = min(batch, draws - start)
        sums = np.zeros((size, g, 7))
        for j, took in enumerate(_deal(colours, counts, size, gen)):
            sums[:, int(places[j, 0]), :] += took @ feats[j]
        stats_.append(wald_statistic(sums))
    drawn = np.concatenate([*stats_, observed[None, :]])
    hits = int(_at_least(drawn[:-1], observed).sum())
    top = _most_extreme(drawn)
    at_top = int(_at_least(drawn[:-1], top).sum())
    return (hits + 1) / (draws + 1), (at_top + 1) / (draws + 1), f"Monte Carlo, {draws:,} draws"


def two_sample_permutation_test(
    ka: np.ndarray,
    na: np.ndarray,
    kb: np.ndarray,
    nb: np.ndarray,
    n_perm: int,
    rng: np.random.Generator | int,
    family: int = 1,
    alpha: float = ALPHA,
) -> PermutationP:
    """Two-sided test of equal pooled rates of arms a and b, permuting whole trials
    between them: ``group_permutation_test`` of two groups, whose statistic is the square
    of the studentized difference (rate_a - rate_b) / sqrt(V_a + V_b)."""
    k = np.concatenate([ka, kb])
    n = np.concatenate([na, nb])
    arm = np.r_[np.zeros(len(ka), dtype=np.int64), np.ones(len(kb), dtype=np.int64)]
    return group_permutation_test(k, n, arm, n_perm, rng, family, alpha)


def permutation_test(
    ka: np.ndarray,
    na: np.ndarray,
    kb: np.ndarray,
    nb: np.ndarray,
    n_perm: int,
    rng: np.random.Generator,
    family: int = 1,
) -> float:
    """The p-value of ``two_sample_permutation_test``."""
    return two_sample_permutation_test(ka, na, kb, nb, n_perm, rng, family).p


def difference_ci(
    ka: np.ndarray, na: np.ndarray, kb: np.ndarray, nb: np.ndarray, alpha: float = 0.05
) -> tuple[float, float, str]:
    """Interval of the difference of pooled rates of two arms of independent trials:
    the arms' own intervals (``cluster_rate_ci``) combined by Newcombe's square-and-add
    ("MOVER", ``square_and_add``), and how (each arm's interval named). In planted arms of
    2 to 20 trials it covers 0.92 or more where the percentile trial bootstrap it replaced
    covered 0.75-0.93, except where the arms' rates are near 0 or 1 with strong correlation
    within trials, as their intervals are (``cluster_rate_ci``): at rate 0.02 and
    correlation 0.3, two equal arms of 30 trials of 15-50 agent-rounds gave intervals that
    exclude 0 in 0.10-0.15 of data sets (redteam20)."""
    ra, rb = float(ka.sum() / na.sum()), float(kb.sum() / nb.sum())
    a_lo, a_hi, a_how = _arm_interval(ka, na, alpha)
    b_lo, b_hi, b_how = _arm_interval(kb, nb, alpha)
    lo, hi = square_and_add(ra, (a_lo, a_hi), rb, (b_lo, b_hi))
    return lo, hi, f"square-and-add of arm a ({a_how}) and arm b ({b_how})"


def _arm_interval(k: np.ndarray, n: np.ndarray, alpha: float) -> tuple[float, float, str]:
    """An arm's interval in a difference: ``cluster_rate_ci``'s, the one the rate tables
    give the arm, named as they name it (an arm of one trial gets the Wilson interval with
    one observation, its trial, not over its agent-rounds: one trial says nothing of how
    trials vary, and the difference must not take its rounds for independent draws)."""
    return cluster_rate_ci(k, n, alpha)


def square_and_add(
    a: float, a_ci: tuple[float, float], b: float, b_ci: tuple[float, float], bound: float = 1.0
) -> tuple[float, float]:
    """The interval of ``a - b`` from the intervals of two estimates (Newcombe's
    square-and-add, "MOVER"), clamped to [-bound, bound] and to contain the difference.
    Exact in the limit for independent estimates; for estimates that move together it
    leaves their correlation out (wider than need be, never narrower)."""
    d = a - b
    below_a, above_a = max(a - a_ci[0], 0.0), max(a_ci[1] - a, 0.0)
    below_b, above_b = max(b - b_ci[0], 0.0), max(b_ci[1] - b, 0.0)
    lo = d - math.sqrt(below_a**2 + above_b**2)
    hi = d + math.sqrt(above_a**2 + below_b**2)
    return float(max(-bound, min(lo, d))), float(min(bound, max(hi, d)))


def compare_counts(
    ka: npt.ArrayLike,
    na: npt.ArrayLike,
    kb: npt.ArrayLike,
    nb: npt.ArrayLike,
    factor: str = "",
    a: Any = "a",
    b: Any = "b",
    n_perm: int = 2000,
    seed: int = 0,
    who: str = HONEST,
    family: int = 1,
) -> Comparison:
    """``compare`` on per-trial counts already made: k successes of n in each trial of arm
    a and of arm b. ``family``: how many tests the permutation p will be Holm-adjusted
    over (``two_sample_permutation_test`` draws enough permutations for it); the test
    draws from a stream of ``seed``, the difference's interval (``difference_ci``) draws
    nothing."""
    ka, na, kb, nb = (np.asarray(x, dtype=float) for x in (ka, na, kb, nb))
    if len(ka) == 0 or len(kb) == 0 or na.sum() == 0 or nb.sum() == 0:
        raise ValueError(f"no data for {factor}={a!r} or {factor}={b!r}")
    table = np.array([[ka.sum(), na.sum() - ka.sum()], [kb.sum(), nb.sum() - kb.sum()]])
    fisher_p = float(sps.fisher_exact(table)[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chi2_p = float(sps.chi2_contingency(table)[1]) if (table.sum(0) > 0).all() else 1.0
    ra, rb = ka.sum() / na.sum(), kb.sum() / nb.sum()
    test = comparison_test(ka, na, kb, nb, n_perm, seed, family)
    lo, hi, how = difference_ci(ka, na, kb, nb)
    return Comparison(
        factor=factor,
        a=str(a),
        b=str(b),
        rate_a=float(ra),
        rate_b=float(rb),
        n_a=int(na.sum()),
        n_b=int(nb.sum()),
        trials_a=len(ka),
        trials_b=len(kb),
        fisher_p=fisher_p,
        chi2_p=chi2_p,
        permutation_p=test.p,
        diff=float(ra - rb),
        diff_ci=(lo, hi),
        diff_ci_method=how,
        population=who,
        permutation_method=test.describe(),
        permutation_min_p=test.p_min,
    )


def comparison_test(
    ka: np.ndarray,
    na: np.ndarray,
    kb: np.ndarray,
    nb: np.ndarray,
    n_perm: int = 2000,
    seed: int = 0,
    family: int = 1,
) -> PermutationP:
    """``compare_counts``' test (its ``permutation_p``, method and smallest p): the
    two-sample permutation test of whole trials, drawing from a stream of ``seed``.
    ``analysis.power`` simulates this very test to plan trials."""
    (perm_seed,) = np.random.SeedSequence(seed).spawn(1)
    return two_sample_permutation_test(
        ka, na, kb, nb, n_perm, np.random.default_rng(perm_seed), family
    )


def compare(
    df: pd.DataFrame,
    factor: str,
    a: Any,
    b: Any,
    outcome: str = "stag",
    n_perm: int = 2000,
    seed: int = 0,
    who: str = HONEST,
    family: int = 1,
) -> Comparison:
    """Arm ``a`` vs arm ``b`` of ``factor`` on a 0/1 outcome over one population (honest
    agents unless ``who`` says otherwise): Fisher and chi-square on pooled counts, a
    trial-clustered (studentized) permutation test, and a trial-clustered bootstrap CI."""
    data = population(df, who)
    ta = _trial_rates(data[data[factor] == a], outcome)
    tb = _trial_rates(data[data[factor] == b], outcome)
    if ta.empty or tb.empty:
        raise ValueError(f"no data for {factor}={a!r} or {factor}={b!r}")
    return compare_counts(
        ta["k"], ta["n"], tb["k"], tb["n"], factor, a, b, n_perm, seed, who, family
    )


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given: the i-th smallest times the
    number of tests not smaller (m - i + 1), made non-decreasing along that order, at most
    1. (statsmodels' ``multipletests(method="holm")`` gives the same, and runs a full
    garbage collection on every call: 0.1 s each in a process holding a large table.)"""
    if not pvalues:
        return []
    p = np.asarray(pvalues, dtype=float)
    order = np.argsort(p, kind="stable")
    steps = p[order] * np.arange(len(p), 0, -1)
    out = np.empty_like(p)
    out[order] = np.minimum(np.maximum.accumulate(steps), 1.0)
    return [float(x) for x in out]


def comparison_family(
    df: pd.DataFrame,
    pairs: list[tuple[str, Any, Any]],
    outcome: str = "stag",
    seed: int = 0,
    who: str = HONEST,
    n_perm: int = 2000,
) -> pd.DataFrame:
    """Several comparisons as one family over one population (honest agents by default),
    with Holm-adjusted clustered p-values."""
    rows = []
    for factor, a, b in pairs:
        try:
            rows.append(compare(df, factor, a, b, outcome, n_perm, seed, who, len(pairs)).as_dict())
        except ValueError:
            continue
    out = pd.DataFrame(rows)
    if not out.empty:
        out["permutation_p_holm"] = holm(out["permutation_p"].tolist())
        out["fisher_p_holm"] = holm(out["fisher_p"].tolist())
    return out


def omnibus_test(
    k: npt.ArrayLike,
    n: npt.ArrayLike,
    groups: npt.ArrayLike,
    n_perm: int = 1000,
    seed: int = 0,
    family: int = 1,
) -> float:
    """Are the pooled rates equal across groups? The p-value of ``group_permutation_test``
    (whole trials permuted between groups, studentized Wald chi-square); NaN with fewer
    than two groups, 1 when every trial has the same rate."""
    return group_permutation_test(k, n, groups, n_perm, seed, family).p


#: the sign-flip trend test enumerates every pattern of signs up to this many trials whose
#: slope is not 0 (2**16 patterns); with more, the normal approximation
TREND_EXACT = 16


@dataclass(frozen=True)
class Trend:
    """A design cell's change of rate over rounds (``round_trend``)."""

    slope: float  # the trials' mean least-squares slope of their rate on round
    slope_lo: float  # its 95% interval: t over trials (blank when every slope is the same)
    slope_hi: float
    z: float  # the sum of the trials' slopes over the root of their sum of squares
    p: float  # two-sided, from the trials' slopes with random signs
    p_min: float  # the smallest p the exact test can give (NaN: normal approximation)
    used: int  # trials with a rate in every round (the others are left out)
    method: str  # "exact" or "normal approximation" ("" with no test)
    note: str  # why there is no test, or what limits it ("" when nothing does)


def round_trend(k: npt.ArrayLike, n: npt.ArrayLike) -> Trend:
    """Does the rate change with round? ``k`` and ``n`` are (trials x rounds) counts.

    Each trial with a rate in every round gives its least-squares slope of rate on round;
    the trials are independent, whatever goes on between a trial's rounds (an agent that
    repeats its last action, a shared mood). With no trend the slopes centre on 0, and
    flipping their signs at random gives the test (exact over every pattern of signs with
    up to ``TREND_EXACT`` trials whose slope is not 0; beyond, the normal approximation
    of their sum over the root of their sum of squares); its level holds when a trial's
    course of rounds is as likely read backwards (rounds exchangeable, or a steady agent
    that repeats itself) and approximately otherwise. Rounds permuted within each trial,
    the test this replaces, took such persistence for a trend: p < 0.05 in 0.20 of data
    sets of an agent that repeats its last action with probability 0.9 (rt39)."""
    kv = np.asarray(k, dtype=float)
    nv = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(nv > 0, kv / nv, np.nan)
    rounds = rate.shape[1]
    full = ~np.isnan(rate).any(axis=1)  # trials with every round played
    used = int(full.sum()) if rounds else 0
    nan = math.nan

    def blank(note: str) -> Trend:
        return Trend(nan, nan, nan, nan, nan, nan, used, "", note)

    if rounds < 2:
        return blank("one round: no trend to test")
    r = rate[full]
    if len(r) == 0:
        return blank("no trial has a valid action in every round: nothing to test")
    if not (r != r[:, :1]).any():
        return blank("no trial's rate changes from round to round: nothing to test")
    c = np.arange(rounds, dtype=float)
    c -= c.mean()
    slopes = r @ c / float((c**2).sum())
    slope, m = float(slopes.mean()), len(slopes)
    notes = []
    lo = hi = nan
    spread = float(slopes.std(ddof=1)) if m > 1 else 0.0
    if m > 1 and spread > 0:
        half = float(sps.t.ppf(0.975, m - 1)) * spread / math.sqrt(m)
        lo, hi = slope - half, slope + half
    else:
        notes.append(
            "one trial: no interval" if m == 1 else "every trial has the same slope: no interval"
        )
    scale = float(np.abs(slopes).max())
    moving = slopes[np.abs(slopes) > 1e-12 * scale]
    total = float(moving.sum())
    z = total / math.sqrt(float((moving**2).sum())) if len(moving) else 0.0
    if len(moving) == 0:
        p, p_min, method = 1.0, 1.0, "exact"
    elif len(moving) <= TREND_EXACT:
        bits = np.arange(2 ** len(moving), dtype=np.int64)[:, None] >> np.arange(len(moving))
        sums = ((bits & 1) * 2 - 1) @ moving
        p = float(np.mean(np.abs(sums) >= abs(total) * (1 - 1e-9)))
        p_min, method = 2.0 ** (1 - len(moving)), "exact"
        if p_min >= 0.05:
            notes.append(
                f"{len(moving)} trial(s) whose rate changes: the test cannot give p below "
                f"{p_min:.3g}"
            )
    else:
        p, p_min, method = float(2 * sps.norm.sf(abs(z))), nan, "normal approximation"
    return Trend(slope, lo, hi, z, p, p_min, used, method, "; ".join(notes))


# -- logistic models -----------------------------------------------------------------
GEE_MAX_TRIALS = 500


def gee_sample(
    df: pd.DataFrame, max_trials: int | None = GEE_MAX_TRIALS, seed: int = 0
) -> pd.DataFrame:
    """All rows of at most ``max_trials`` trials drawn at random (GEE cost grows with rows;
    a few thousand trials pin the coefficients down well)."""
    trial = df["trial_id"]
    codes = trial.cat.codes.to_numpy() if isinstance(trial.dtype, pd.CategoricalDtype) else None
    if codes is not None and (codes >= 0).all():  # by category: each id made text once
        names = pd.Index(trial.cat.categories.astype(str))
        ids = names[pd.unique(codes)].to_numpy()  # the ids in the order the rows give them
    else:
        codes, ids = None, trial.astype(str).unique()
    if max_trials is None or len(ids) <= max_trials:
        return df
    keep = set(np.random.default_rng(seed).choice(ids, size=max_trials, replace=False))
    mask = names.isin(keep)[codes] if codes is not None else trial.astype(str).isin(keep)
    return df.loc[np.asarray(mask)]


def _prepare(df: pd.DataFrame) -> pd.DataFrame:
    data = df.dropna(subset=["stag"]).copy()
    for col in data.select_dtypes("category").columns:
        data[col] = data[col].astype(str)
    return data


def gee_logit(df: pd.DataFrame, formula: str = "stag ~ C(disclosure) * round") -> pd.DataFrame:
    """Logistic GEE, exchangeable correlation within trials, as statsmodels gives it (no
    checks, and the plain sandwich covariance, which is anti-conservative with few trials:
    ``logit_model`` is the checked entry point). Factors with one level are dropped from
    the formula by the caller (see ``default_formula``)."""
    import statsmodels.api as sm
    import statsmodels.formula.api as smf

    data = _prepare(df)
    model = smf.gee(
        formula,
        groups="trial_id",
        data=data,
        family=sm.families.Binomial(),
        cov_struct=sm.cov_struct.Exchangeable(),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit()
    return _gee_table(res)


def _gee_table(res: Any, cov: np.ndarray | None = None, dof: int | None = None) -> pd.DataFrame:
    """Coefficients, Wald statistic, p and 95% intervals (``coef_table``): from ``cov`` when
    given (e.g. ``bias_reduced_cov``), else from the fit's own covariance. The reference is
    the normal (column ``z``), or with ``dof`` Student's t on that many degrees of freedom
    (column ``t``)."""
    if cov is None:
        ci = res.conf_int()
        se, z, p, lo, hi = res.bse, res.tvalues, res.pvalues, ci[0], ci[1]
    else:
        coef = np.asarray(res.params, dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            se = np.sqrt(np.diag(cov))
            z = coef / se
        p, lo, hi = _wald(coef, z, se, dof)
    return coef_table(res.params, se, "z" if dof is None else "t", z, p, lo, hi, res.params.index)


def coef_table(
    coef: Any, se: Any, stat_name: str, stat: Any, p: Any, lo: Any, hi: Any, index: Any
) -> pd.DataFrame:
    """A model's table, every interval named by its scale: ``coef`` (log-odds) with its
    95% interval ``coef_lo``-``coef_hi``, and ``odds_ratio`` = exp(coef) with its own,
    ``or_lo``-``or_hi`` = exp of the coefficient's bounds (an odds ratio's interval beside
    it, never the log-odds one: "OR 1.68, CI 0.24-0.79" excluded its own estimate)."""

    def odds(x: Any) -> Any:
        return np.exp(np.clip(np.asarray(x, dtype=float), -700, 700))

    return pd.DataFrame(
        {
            "coef": coef,
            "se": se,
            stat_name: stat,
            "p": p,
            "coef_lo": lo,
            "coef_hi": hi,
            "odds_ratio": odds(coef),
            "or_lo": odds(lo),
            "or_hi": odds(hi),
        },
        index=index,
    )


def _wald(coef: Any, stat: Any, se: Any, dof: int | None) -> tuple[Any, Any, Any]:
    """The two-sided p of Wald statistics ``stat`` and the 95% intervals ``coef`` +- q
    ``se``: on the normal, or with ``dof`` on Student's t with that many degrees of
    freedom (at least 1)."""
    ref = sps.norm if dof is None else sps.t(max(int(dof), 1))
    q = ref.ppf(0.975)
    return 2 * ref.sf(np.abs(stat)), coef - q * se, coef + q * se


def bias_reduced_cov(model: Any) -> np.ndarray | None:
    """The bias-reduced sandwich covariance of Mancl and DeRouen (2001) of a fitted
    statsmodels GEE (unweighted), equal to statsmodels' ``cov_type="bias_reduced"``: each
    trial's residuals are inflated by (I - H_i)^-1, H_i its leverage, before they enter the
    sandwich. Computed with the Woodbury identity, a (coefficients x coefficients) solve per
    trial instead of statsmodels' (rows x rows) one (minutes on long trials). None when a
    trial's leverage is singular (one trial alone determines a coefficient)."""
    _, naive, _ = model._covmat()
    naive = naive / model.scaling_factor
    scale = model.estimate_scale()
    n_coef = naive.shape[0]
    meat = np.zeros((n_coef, n_coef))
    for i in range(model.num_group):
        expval, lpr = model.cached_means[i]
        resid = model.endog_li[i] - expval
        dmat = model.mean_deriv(model.exog_li[i], lpr)
        sdev = np.sqrt(model.family.variance(expval))
        solved = model.cov_struct.covariance_matrix_solve(expval, i, sdev, (dmat, resid))
        if solved is None:
            return None
        vinv_d, vinv_r = solved  # V_i^-1 D_i, V_i^-1 r_i
        # (I - H_i)^-1 r_i with H_i = D_i M D_i' V_i^-1 / scale = U W: r + U (I - W U)^-1 W r
        w_r = naive @ (vinv_d.T @ resid) / scale
        w_u = naive @ (vinv_d.T @ dmat) / scale
        try:
            c = np.linalg.solve(np.eye(n_coef) - w_u, w_r)
        except np.linalg.LinAlgError:
            return None
        score = (dmat.T @ vinv_r + dmat.T @ (vinv_d @ c)) / scale
        meat += np.outer(score, score)
    return np.asarray(naive @ meat @ naive * model.scaling_factor)


#: the design factors ``default_formula`` may use, in order: a factor whose level those
#: before it in the formula determine is left out (the first of two that determine each other
#: is kept). ``population`` holds one label per population (the report's short label).
FORMULA_FACTORS = (
    "disclosure",
    "adversary_arm",
    "adversary_kind",
    "topology",
    "condition",
    "population",
    "prompt_variant",
    "defence",
    "payload",
)


def formula_terms(df: pd.DataFrame) -> tuple[str, dict[str, str]]:
    """``stag ~ factor * round + ... + model`` with the design factors (``FORMULA_FACTORS``)
    that vary in the data, and for each one that varies but is left out, why:

    - its level is determined by the factors already in the formula (an imported study's
      condition names its topology and disclosure: one of them is enough);
    - ``population`` when ``C(model)`` stands for it: every model plays in one population
      only, so the population's main effect is the sum of its models'.

    Whether the terms kept are estimable (aliasing, separation, too few trials) is
    ``logit_model``'s to decide and say."""
    terms: list[str] = []
    left_out: dict[str, str] = {}
    with_model = "model" in df.columns and df["model"].nunique() > 1
    for c in FORMULA_FACTORS:
        if c not in df.columns or df[c].nunique() < 2:
            continue
        if terms and df.groupby(terms, observed=True)[c].nunique().max() < 2:
            left_out[c] = f"the factors in the formula ({', '.join(terms)}) determine it"
            continue
        model_only = c == "population" and with_model
        if model_only and df.groupby("model", observed=True)[c].nunique().max() < 2:
            left_out[c] = "C(model) stands for it (each model plays in one population only)"
            continue
        terms.append(c)
    rhs = " + ".join(f"C({c}) * round" for c in terms) or "round"
    if with_model:
        rhs += " + C(model)"
    return f"stag ~ {rhs}", left_out


def default_formula(df: pd.DataFrame) -> str:
    """The formula of ``formula_terms`` (without what it leaves out and why)."""
    return formula_terms(df)[0]


def _independent_columns(x: np.ndarray, tol: float = 1e-9) -> list[int]:
    """The columns kept, in order: each column that is not a linear combination of the
    columns kept before it (a sequential rank check, Gram-Schmidt on the distinct rows). The
    choice follows the design matrix's column order, the formula's terms (main effects
    before their ``:round`` interactions), never the columns' norms: the same design keeps
    the same columns whatever its trial counts (a pivoted QR kept whichever of two aliased
    columns had more rows behind it, so what a kept coefficient meant changed with them)."""
    if x.size == 0:
        return []
    rows = np.unique(np.asarray(x, dtype=float), axis=0)  # the same column space, fewer rows
    basis = np.zeros((rows.shape[0], 0))
    keep: list[int] = []
    for j in range(rows.shape[1]):
        v = rows[:, j]
        norm = float(np.linalg.norm(v))
        if norm == 0.0:
            continue
        r = v - basis @ (basis.T @ v)
        r = r - basis @ (basis.T @ r)  # twice: Gram-Schmidt loses orthogonality once
        left = float(np.linalg.norm(r))
        if left > tol * norm:
            basis = np.column_stack([basis, r / left])
            keep.append(j)
    return keep


def _factor_of(name: str) -> str | None:
    """The factor ``C(f)`` of a main-effect column ``C(f)[T.level]`` (else None)."""
    m = re.fullmatch(r"(C\(\w+\))\[T\..*\]", name)
    return m.group(1) if m else None


def _uneven_factors(xs: np.ndarray, names: list[str], keep: list[int]) -> list[str]:
    """The factors whose rows are not all contrasts with one reference level: a main-effect
    column of a factor dropped as a combination of kept columns of other factors (besides
    the Intercept), together with those factors; in the formula's order."""
    kept = xs[:, keep]
    involved: set[str] = set()
    for j, name in enumerate(names):
        own = _factor_of(name)
        if j in keep or own is None:
            continue
        coef, *_ = np.linalg.lstsq(kept, xs[:, j], rcond=None)
        others = {
            f
            for i, c in zip(keep, coef, strict=True)
            if abs(c) > 1e-8 and (f := _factor_of(names[i])) is not None and f != own
        }
        if others:
            involved |= others | {own}
    return [f for f in dict.fromkeys(_factor_of(n) for n in names) if f in involved]


def _formula_factors(formula: str) -> list[str]:
    """The factors ``C(name)`` of a formula, in order."""
    return list(dict.fromkeys(re.findall(r"C\((\w+)\)", formula)))


def _reference_cell(data: pd.DataFrame, formula: str, xs: np.ndarray, names: list[str]) -> str:
    """The cell the kept coefficients are relative to: the factors' levels on the rows
    where every kept factor column (main effect) is 0. Where no row is (a design without
    that cell), each factor's levels without a kept column."""
    main = [j for j, n in enumerate(names) if n.startswith("C(") and ":" not in n]
    zero = (xs[:, main] == 0).all(axis=1) if main else np.ones(len(xs), dtype=bool)
    parts = []
    for f in _formula_factors(formula):
        if zero.any():
            levels = sorted(data.loc[zero, f].astype(str).unique())
        else:
            levels = [
                lv for lv in sorted(data[f].astype(str).unique()) if f"C({f})[T.{lv}]" not in names
            ]
        parts.append(f"{f} = " + " or ".join(repr(lv) for lv in levels))
    return ", ".join(parts)


#: a factor level held by fewer trials than this gets no inference for the coefficients
#: that need its trials: with 1 trial its cluster-robust standard error has no spread
#: between trials to estimate (se of 1e3-1e8), with 2 its test rejects a true null about
#: twice as often as it should (redteam17 finding 6)
MIN_LEVEL_TRIALS = 3


def _thin_levels(
    data: pd.DataFrame, formula: str, xs: np.ndarray, names: list[str]
) -> tuple[list[str], list[str]]:
    """The factor levels held by fewer than ``MIN_LEVEL_TRIALS`` trials (as "factor =
    'level' (n trials)"), and the coefficients those trials alone determine: a coefficient
    is determined by them when the design without their rows cannot estimate it (its unit
    vector is outside the row space of the other rows), which takes in the level's own
    columns and, when the level is a reference, the columns measured against it. With
    two factors or more, likewise each cell (a combination of their levels) held by fewer
    trials, listed where it alone determines a coefficient (an interaction's, in a formula
    that has one; in a formula of main effects the other cells determine them)."""
    factors = _formula_factors(formula)
    thin, needs = [], np.zeros(len(names), dtype=bool)
    text = {f: data[f].astype(str) for f in factors}
    # each factor's levels (listed always), then the cells of all of them (listed where
    # they alone determine a coefficient)
    for keys in [[f] for f in factors] + ([factors] if len(factors) > 1 else []):
        per = data.groupby([text[f] for f in keys])["trial_id"].nunique()
        for key, count in per[per < MIN_LEVEL_TRIALS].items():
            cell = cast(tuple[str, ...], key if isinstance(key, tuple) else (key,))
            inside = np.logical_and.reduce(
                [(text[f] == v).to_numpy() for f, v in zip(keys, cell, strict=True)]
            )
            needed = _needed(xs, ~inside)
            if len(keys) == 1 or needed.any():
                levels = ", ".join(f"{f} = {v!r}" for f, v in zip(keys, cell, strict=True))
                thin.append(f"{levels} ({count} trial{'s' if count != 1 else ''})")
                needs |= needed
    return thin, [n for n, b in zip(names, needs, strict=True) if b]


def _flat_cells(
    data: pd.DataFrame, formula: str, xs: np.ndarray, names: list[str]
) -> tuple[list[str], list[str], list[str]]:
    """The design cells (combinations of the formula's factors; the whole table when it
    has none) of at least ``MIN_LEVEL_TRIALS`` trials whose trials all have the same rate,
    strictly between 0 and 1 (a rate of 0 or 1 is separation's): a trial-clustered
    covariance (sandwich or trial bootstrap) sees no spread there, so the standard errors
    of what rests on them are too small (rt39: p < 0.05 in 0.15 of null data sets with
    one such arm). Returns the cells that alone determine a coefficient (``_needed``),
    those coefficients, and the other such cells (as "factor = 'level' (n trials, rate r)")."""
    factors = _formula_factors(formula)
    trial = data["trial_id"].astype(str)
    keys = [data[f].astype(str) for f in factors]
    stag = data["stag"].astype(float)
    per = stag.groupby([*keys, trial]).agg(["sum", "count"])  # per cell (if any) and trial
    groups: Any = per.groupby(level=list(range(len(factors)))) if keys else [((), per)]
    alone, others, needs = [], [], np.zeros(len(names), dtype=bool)
    for key, g in groups:
        rate = (g["sum"] / g["count"]).to_numpy()
        if len(rate) < MIN_LEVEL_TRIALS or not 0 < rate[0] < 1 or (rate != rate[0]).any():
            continue
        cell = key if isinstance(key, tuple) else (key,)
        inside = (
            np.logical_and.reduce([(k == v).to_numpy() for k, v in zip(keys, cell, strict=True)])
            if keys
            else np.ones(len(data), dtype=bool)
        )
        what = ", ".join(f"{f} = {v!r}" for f, v in zip(factors, cell, strict=True))
        what = f"{what or 'every trial'} ({len(rate)} trials, rate {rate[0]:.3g})"
        needed = _needed(xs, ~inside)
        if needed.any():
            alone.append(what)
            needs |= needed
        else:
            others.append(what)
    return alone, [n for n, b in zip(names, needs, strict=True) if b], others


def _blank_flat(
    table: pd.DataFrame, flat: tuple[list[str], list[str], list[str]], notes: list[str]
) -> pd.DataFrame:
    """The table without se, statistic, p or interval for the coefficients that cells of
    trials all alike (``_flat_cells``) alone determine, and a note naming the cells."""
    alone, terms, others = flat

    def listed(cells: list[str]) -> str:
        more = f"; and {len(cells) - 4} more" if len(cells) > 4 else ""
        return "; ".join(cells[:4]) + more

    if alone:
        notes.append(
            f"design cells whose trials all have the same stag rate: {listed(alone)}: no "
            f"standard error, p or interval for {', '.join(terms)}, which rest on them (a "
            "trial-clustered standard error has no spread between their trials to measure, "
            "and came out too small: in null data with one such arm these terms had "
            "p < 0.05 in 15% of the fits). The Comparisons section compares such cells by "
            "a test that allows for it"
        )
        table = _without_inference(table, [t for t in terms if t in table.index])
    if others:
        notes.append(
            f"design cells whose trials all have the same stag rate: {listed(others)}: "
            "they add no spread between trials to the standard errors of the terms they "
            "enter, which are smaller than they should be by what those cells' own chance "
            "would add (no term rests on them alone)"
        )
    return table


def _needed(xs: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Which columns of the design ``xs`` the rows outside ``others`` (a mask of the other
    rows) alone determine: each column whose unit vector is outside the other rows' span."""
    rest = xs[others]
    rest = np.unique(rest, axis=0) if len(rest) else np.zeros((0, xs.shape[1]))
    rank = np.linalg.matrix_rank(rest) if len(rest) else 0
    unit = np.eye(xs.shape[1])
    return np.array(
        [np.linalg.matrix_rank(np.vstack([rest, unit[j]])) > rank for j in range(xs.shape[1])],
        dtype=bool,
    )


def _design(data: pd.DataFrame, formula: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from patsy import dmatrices

    y, x = dmatrices(formula, data, return_type="dataframe")
    return y.to_numpy(dtype=float).ravel(), x.to_numpy(dtype=float), [str(c) for c in x.columns]


def _patterns(
    xs: np.ndarray, y: np.ndarray, trial_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of the design matrix collapsed to unique patterns: per pattern its row of X,
    and per (trial, pattern) the successes and trials. Returns (X, K, N) with K and N of
    shape (trials x patterns)."""
    uniq, pattern = np.unique(xs, axis=0, return_inverse=True)
    pattern = np.asarray(pattern).ravel()
    trial_codes, trials = pd.factorize(trial_ids)
    cells = trial_codes * len(uniq) + pattern
    size = len(trials) * len(uniq)
    k = np.bincount(cells, weights=y, minlength=size).reshape(len(trials), len(uniq))
    n = np.bincount(cells, minlength=size).astype(float).reshape(len(trials), len(uniq))
    return uniq, k, n


def separation(x: np.ndarray, k: np.ndarray, n: np.ndarray, tol: float = 1e-7) -> np.ndarray:
    """Complete or quasi-complete separation (Albert and Anderson; Konis's linear program):
    is there a direction b != 0 with x b >= 0 wherever a success was seen and x b <= 0
    wherever a failure was seen? Returns b (zeros when the data do not separate)."""
    from scipy.optimize import linprog

    succ, fail = k > 0, (n - k) > 0
    rows = np.vstack([-x[succ], x[fail]])  # -x b <= 0 for successes, x b <= 0 for failures
    objective = -(x[succ].sum(0) - x[fail].sum(0))  # maximise the total margin
    res = linprog(
        objective,
        A_ub=rows,
        b_ub=np.zeros(len(rows)),
        bounds=[(-1, 1)] * x.shape[1],
        method="highs",
    )
    if res.status != 0 or -res.fun <= tol:
        return np.zeros(x.shape[1])
    b = np.asarray(res.x)
    b[np.abs(b) < 1e-6] = 0.0
    return b


def firth_logit(
    x: np.ndarray, k: np.ndarray, n: np.ndarray, max_iter: int = 100, tol: float = 1e-8
) -> np.ndarray:
    """Firth's penalised maximum likelihood for grouped binomial data (k successes of n at
    each row of x): estimates stay finite under separation."""
    keep = n > 0
    x, k, n = x[keep], k[keep], n[keep]
    beta = np.zeros(x.shape[1])

    def penalised(b: np.ndarray) -> float:
        eta = x @ b
        p = expit(eta)
        info = x.T @ (x * (n * p * (1 - p))[:, None])
        sign, logdet = np.linalg.slogdet(info)
        if sign <= 0:
            return -math.inf
        ll = float(np.sum(k * -np.logaddexp(0, -eta) + (n - k) * -np.logaddexp(0, eta)))
        return ll + 0.5 * float(logdet)

    current = penalised(beta)
    for _ in range(max_iter):
        p = expit(x @ beta)
        w = n * p * (1 - p)
        info = x.T @ (x * w[:, None])
        try:
            inv = np.linalg.inv(info)
        except np.linalg.LinAlgError:
            inv = np.linalg.pinv(info)
        h = w * np.sum((x @ inv) * x, axis=1)  # the diagonal of x inv x' (einsum: 6x slower)
        score = x.T @ (k - n * p + h * (0.5 - p))
        step = inv @ score
        step_size = 1.0
        trial = beta + step
        value = penalised(trial)
        while value < current - 1e-12 and step_size > 1e-4:  # step halving
            step_size /= 2
            trial = beta + step_size * step
            value = penalised(trial)
        beta, current = trial, value
        if np.max(np.abs(step_size * step)) < tol:
            break
    return beta


@dataclass(frozen=True)
class RoundCentre:
    """The round the regression's Intercept and factor rows are at (``round_centre``)."""

    #: the round ``round`` is centred at: the middle of the rounds played
    centre: float
    #: the first and last round played (any level)
    first: int
    last: int
    #: "factor = 'level' (rounds a-b)" of the levels whose played rounds do not include
    #: the centre
    outside: list[str] = field(default_factory=list)
    #: their terms (``C(f)[T.level]``, ``Intercept`` for a reference level) -> the levels
    extrapolated: dict[str, str] = field(default_factory=dict)


def round_centre(data: pd.DataFrame, formula: str) -> RoundCentre:
    """Where ``round`` is centred: the middle of the rounds played, so that the Intercept
    and the factor rows are log-odds (ratios) at a played round, not at a round 0 never
    played; and the levels of the formula's factors whose own played rounds do not
    include it (a condition of 1 round beside one of 5, centred at round 3: redteam rt29
    F4). Such a level's row is no observation at the centre but an extrapolation to it
    along a fitted round slope (its own ``:round`` row where it has one; with one round
    played that row is aliased, and its row is its difference at the round it played
    from the other levels' fitted line there, taken to hold at every round). Moving the
    centre into the rounds every level played would not mend that (the difference of a
    one-round level is the same at any centre) and would put every other factor row at
    an end round (round 1 beside a one-round condition), so the centre stays and such
    rows are named. ``data``: rows with ``stag`` (missing: no valid action) and ``round``
    uncentred."""
    played = data.loc[data["stag"].notna()]
    if played.empty:
        return RoundCentre(1.0, 1, 1)
    first, last = int(played["round"].min()), int(played["round"].max())
    centre = (first + last) / 2
    outside: list[str] = []
    extrapolated: dict[str, str] = {}
    for f in _formula_factors(formula):
        if f not in played.columns:
            continue
        span = played.groupby(played[f].astype(str), observed=True)["round"].agg(["min", "max"])
        reference = str(span.index.min())  # patsy's reference: the first level
        for lv, (a, b) in span.astype(int).iterrows():
            if a <= centre <= b:
                continue
            rounds = f"rounds {a}-{b}" if a < b else f"round {a}"
            outside.append(f"{f} = {lv!r} ({rounds})")
            term = "Intercept" if lv == reference else f"C({f})[T.{lv}]"
            extrapolated[term] = "; ".join(filter(None, [extrapolated.get(term), f"{f} = {lv!r}"]))
    return RoundCentre(centre, first, last, outside, extrapolated)


@dataclass
class ModelFit:
    """A fitted logistic model of stag on the design, and what it can be trusted for."""

    formula: str
    method: str
    table: pd.DataFrame | None
    notes: list[str] = field(default_factory=list)
    separated_terms: list[str] = field(default_factory=list)
    #: the cell the factor rows compare their levels with (``_reference_cell``)
    reference: str = ""
    #: factors whose rows are not contrasts with the reference level (``_uneven_factors``)
    uneven: list[str] = field(default_factory=list)


class _Diverged(ArithmeticError):
    """GEE's iteration gave non-finite coefficients: it cannot recover from them."""

    def __init__(self, iteration: int) -> None:
        super().__init__(iteration)
        self.iteration = iteration


@functools.cache
def _stopping_gee() -> Any:
    """statsmodels' GEE, except that its fit stops (``_Diverged``) at the first iteration
    whose Newton step is not finite: the coefficients it adds the step to are then not
    finite, and stay so (NaN spreads), so the iterations left to its limit could only end
    unconverged. On a scripted run (every honest player of a trial alike) the limit's 30
    iterations of NaN took 3 s of a 100,000-trial report. A fit that stays finite runs
    exactly as before."""
    from statsmodels.genmod.generalized_estimating_equations import GEE

    class StoppingGEE(GEE):  # type: ignore[misc]
        iterations = 0

        def _update_mean_params(self) -> tuple[Any, Any]:
            update, score = super()._update_mean_params()
            self.iterations += 1
            if update is not None and not (np.isfinite(update).all() and np.isfinite(score).all()):
                raise _Diverged(self.iterations)
            return update, score

    return StoppingGEE


#: what ``logit_model`` says its GEE fit is
GEE_METHOD = (
    "GEE (exchangeable, trials as clusters; bias-reduced Mancl-DeRouen sandwich covariance, "
    "t reference with trials - coefficients degrees of freedom)"
)


def logit_model(
    df: pd.DataFrame,
    formula: str,
    n_boot: int = 200,
    seed: int = 0,
    max_iter: int = 30,
    ctol: float = 1e-6,
) -> ModelFit:
    """The checked logistic model: GEE (exchangeable, trials as clusters) when the data
    allow it, its standard errors from the bias-reduced (Mancl-DeRouen) sandwich, which
    keeps tests near their nominal level with few trials where the plain sandwich rejects
    a true null far too often (``benchmarks/gee_small_sample.py``). With no more trials
    than coefficients no trial-clustered covariance exists: not estimable, saying so. When
    the data separate (a linear program finds a direction that splits successes
    from failures) or GEE does not converge or gives runaway coefficients, Firth's
    penalised logistic regression with trial-cluster bootstrap standard errors and the
    same t reference instead (``_firth_bootstrap``). Aliased terms (determined by others)
    are dropped and named. ``method`` and ``notes`` say which and why."""
    from patsy import PatsyError
    from statsmodels.genmod.cov_struct import Exchangeable
    from statsmodels.genmod.families import Binomial

    data = _prepare(df)
    if data.empty or data["stag"].nunique() < 2:
        what = "no valid actions" if data.empty else f"every outcome is {data['stag'].iloc[0]:g}"
        return ModelFit(formula, "not estimable", None, [f"not estimable: {what}"])
    try:
        y, xs, names = _design(data, formula)
    except PatsyError as exc:
        return ModelFit(formula, "not estimable", None, [f"the formula does not fit: {exc}"])
    notes: list[str] = []
    keep = _independent_columns(xs)
    dropped = [names[i] for i in range(len(names)) if i not in keep]
    uneven = _uneven_factors(xs, names, keep)
    xs, names = xs[:, keep], [names[i] for i in keep]
    cell = _reference_cell(data, formula, xs, names)
    if uneven:
        notes.append(
            f"the rows of {', '.join(uneven)} do not compare each level with one reference "
            "level: a level's column of one of these factors was dropped as a combination "
            "of the others' columns (a factor nested in another, such as models that each "
            "play in one population), so the rows compare levels within the groups where "
            "they occur, and the reference cell below is only the Intercept's"
        )
    if dropped:
        notes.append(
            f"aliased terms dropped: {', '.join(dropped)} (each is a linear combination of "
            "the columns before it in the formula; columns are dropped in the formula's "
            "order, so the same design keeps the same columns whatever its trial counts)"
            + (
                f". The kept coefficients are relative to the reference cell {cell}: the "
                "Intercept and round are that cell's, and each factor row (and its :round "
                "row) compares its level with it"
                + (f", except the rows of {', '.join(uneven)} (see above)" if uneven else "")
                if cell
                else ""
            )
        )
    trial_ids = data["trial_id"].astype(str).to_numpy()
    n_trials, n_coef = len(pd.unique(trial_ids)), len(names)
    if n_trials <= n_coef:
        notes.append(
            f"too few trials for inference: {n_trials} trials (clusters) for {n_coef} "
            "coefficients; a trial-clustered covariance needs more trials than coefficients "
            "(with fewer it is singular and its standard errors collapse towards 0)"
        )
        return ModelFit(formula, "not estimable", None, notes)
    thin = _thin_levels(data, formula, xs, names)
    alike = _flat_cells(data, formula, xs, names)
    x, k, n = _patterns(xs, y, trial_ids)
    direction = separation(x, k.sum(0), n.sum(0))
    separated = [names[i] for i in np.flatnonzero(direction)]
    if separated:
        notes.append(
            "complete or quasi-complete separation: some outcomes are perfectly predicted "
            f"along {', '.join(separated)}; GEE coefficients would run off to infinity"
        )
    else:
        from statsmodels.tools.sm_exceptions import ConvergenceWarning, IterationLimitWarning

        groups = pd.factorize(trial_ids)[0]
        model = _stopping_gee()(
            y,
            pd.DataFrame(xs, columns=names),
            groups=groups,
            family=Binomial(),
            cov_struct=Exchangeable(),
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                res = model.fit(maxiter=max_iter, ctol=ctol)
            except _Diverged as stop:
                res = None
                notes.append(
                    "GEE did not converge (its coefficients became non-finite at iteration "
                    f"{stop.iteration}; stopped there)"
                )
            except (np.linalg.LinAlgError, ValueError, ZeroDivisionError) as exc:
                res = None
                notes.append(f"GEE failed: {exc}")
        flagged = [
            w for w in caught if issubclass(w.category, ConvergenceWarning | IterationLimitWarning)
        ]
        converged = res is not None and not flagged and getattr(res, "converged", True)
        cov = bias_reduced_cov(model) if converged else None
        if converged and cov is None:
            notes.append(
                "GEE's bias-reduced covariance could not be computed (a trial's leverage is "
                "singular: one trial alone determines a coefficient)"
            )
        elif converged:
            table = _gee_table(res, cov, dof=n_trials - n_coef)
            finite = np.isfinite(table[["coef", "se", "p"]].to_numpy()).all()
            if finite and table["coef"].abs().max() < 15:
                table = _blank_flat(_blank(table, thin, notes), alike, notes)
                return ModelFit(formula, GEE_METHOD, table, notes, reference=cell, uneven=uneven)
            if not finite:
                bad = table.index[~np.isfinite(table[["coef", "se", "p"]].to_numpy()).all(1)]
                notes.append(
                    f"GEE gave a non-finite coefficient, standard error or p for "
                    f"{', '.join(map(str, bad))}"
                )
            else:
                notes.append("GEE gave runaway coefficients (|coef| >= 15)")
        elif res is not None:
            why = str(flagged[0].message) if flagged else "statsmodels marks it unconverged"
            notes.append(f"GEE did not converge ({why.splitlines()[0]})")
    table, flat = _firth_bootstrap(x, k, n, names, n_boot, seed, n_trials - n_coef)
    apart = [t for t in separated if t not in flat]
    if apart:
        table.loc[apart, INFERENCE] = np.nan
        notes.append(
            f"no standard error, p or interval for {', '.join(apart)}, the terms along which "
            "the data separate: they rest on cells in which every trial did the same, where "
            "trials do not vary and a trial bootstrap (or sandwich) has no spread to measure "
            "the chance of that; in null data at stag rates near 0.95 with 2-3 trials per "
            "cell such factor terms had p < 0.05 in 17-86% of the fits. Their coefficients "
            "are Firth's finite estimates; the rate tables give each cell's and model's rate "
            "with its interval, and the Comparisons section compares design cells by a "
            "permutation test of trials"
        )
    if flat:
        notes.append(
            f"the bootstrap draws (their central 95%) give the same coefficient for "
            f"{', '.join(flat)} (the trials do not vary along them): no standard error, p or "
            "interval for each"
        )
    return ModelFit(
        formula,
        f"Firth penalised logistic; standard errors from a trial-cluster bootstrap (B={n_boot}; "
        "half-width of the central 95% of draws over 1.96), t reference with trials - "
        "coefficients degrees of freedom",
        _blank_flat(_blank(table, thin, notes), alike, notes),
        notes,
        separated,
        cell,
        uneven,
    )


def _blank(
    table: pd.DataFrame, thin: tuple[list[str], list[str]], notes: list[str]
) -> pd.DataFrame:
    """The table without se, statistic, p or interval for the coefficients that trials of a
    thin level (``_thin_levels``) alone determine, and a note naming the levels."""
    levels, terms = thin
    if not levels:
        return table
    what = (
        f"no standard error, p or interval for {', '.join(terms)}, which "
        f"{'it needs' if len(levels) == 1 else 'they need'}"
        if terms
        else "every coefficient can be estimated without them"
    )
    notes.append(
        f"factor levels (or cells of them) held by fewer than {MIN_LEVEL_TRIALS} trials: "
        f"{'; '.join(levels)}: "
        f"{what} (with 1 or 2 trials behind a coefficient the between-trial spread it needs "
        "cannot be estimated: at 1 trial its standard error is unbounded, at 2 its test "
        "rejects a true null about twice as often as it should)"
    )
    return _without_inference(table, terms)


def _without_inference(table: pd.DataFrame, terms: list[str]) -> pd.DataFrame:
    """A copy of ``table`` without se, statistic, p or interval for ``terms``."""
    table = table.copy()
    cols = [c for c in (*INFERENCE, "z") if c in table.columns]
    table.loc[terms, cols] = np.nan
    return table


#: the columns of a coefficient's inference (blank where there is none to give)
INFERENCE = ["se", "t", "p", "coef_lo", "coef_hi", "or_lo", "or_hi"]

#: a Firth coefficient whose central bootstrap draws (2.5th to 97.5th percentile, and the
#: estimate) lie within this of one another has no spread to make an interval from (they
#: differ by rounding only)
FLAT_BOOTSTRAP = 1e-9


#: the normal quantile that turns the central 95% of the bootstrap draws into a standard
#: error (their half-width over it)
_Z975 = float(sps.norm.ppf(0.975))


def _firth_bootstrap(
    x: np.ndarray,
    k: np.ndarray,
    n: np.ndarray,
    names: list[str],
    n_boot: int,
    seed: int,
    dof: int,
) -> tuple[pd.DataFrame, list[str]]:
    """Firth's coefficients; a standard error of each from the trial-cluster bootstrap, and
    a Wald t statistic, p and 95% interval on Student's t with ``dof`` (trials -
    coefficients) degrees of freedom; and the terms whose draws have no spread (every
    resample gives the same coefficient, to rounding: the data do not vary along it),
    which get no se, statistic, p or interval rather than a zero-width one and a p from
    rounding.

    The standard error is the half-width of the draws' central 95% over 1.96, not their
    standard deviation: a resample that holds no trial of some level leaves its
    coefficient to run off (a standard deviation of 1e14 was printed), and one on which
    Firth stops short is a stray draw; neither moves the central draws, nor the flat
    check. The t reference, not the draws' percentiles and signs: with 2-3 trials per cell
    the percentile interval and its sign p rejected a true null in 7-17% of the tests
    (redteam17 finding 7), as the plain sandwich does against the normal, and t on trials
    - coefficients degrees of freedom widens with few trials as the GEE's does."""
    coef = firth_logit(x, k.sum(0), n.sum(0))
    w = boot_weights(k.shape[0], n_boot, np.random.default_rng(seed))
    kb, nb = w @ k, w @ n
    boots = np.array([firth_logit(x, kb[i], nb[i]) for i in range(n_boot)])
    lo, hi = np.percentile(boots, [2.5, 97.5], axis=0)
    central = np.maximum(hi, coef) - np.minimum(lo, coef)  # with the estimate
    se = central / (2 * _Z975)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = coef / se
    p, ci_lo, ci_hi = _wald(coef, t, se, dof)
    table = coef_table(coef, se, "t", t, p, ci_lo, ci_hi, names)
    # no spread: the central 95% of the draws (and the estimate) lie within rounding of one
    # another
    flat = central < FLAT_BOOTSTRAP
    table.loc[flat, INFERENCE] = np.nan
    return table, [name for name, f in zip(names, flat, strict=True) if f]


# -- power ------------------------------------------------------------------------------
def check_power_inputs(
    p0: float,
    p1: float,
    alpha: float = 0.05,
    power: float = 0.8,
    cluster_size: int = 1,
    icc: float = 0.0,
    family: int = 1,
) -> None:
    """Refuse (``ValueError``, saying what is wrong) a plan that means nothing: rates
    outside [0, 1] or equal, alpha outside (0, 1), power not between alpha and 1 (power 1
    needs infinitely many trials; power at or below alpha needs none), an ICC outside
    [0, 1] (a negative one would make the design effect fall below 1), a cluster size or a
    number of tests below 1. NaN fails every check."""
    for name, p in (("p0", p0), ("p1", p1)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} is a stag rate and must lie in [0, 1], not {p:g}")
    if p0 == p1:
        raise ValueError("p0 and p1 are equal: no effect to detect")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie strictly between 0 and 1, not {alpha:g}")
    if not power < 1.0:
        raise ValueError(
            f"power must be below 1, not {power:g}: power 1 needs infinitely many trials"
        )
    if not alpha < power:
        raise ValueError(
            f"power must exceed alpha ({alpha:g}), not {power:g}: a test that rejects at "
            "alpha has at least that power with no trials at all"
        )
    if family < 1:
        raise ValueError(f"the number of tests must be at least 1, not {family}")
    if not 0.0 <= icc <= 1.0:
        raise ValueError(f"the ICC must lie in [0, 1], not {icc:g}")
    if cluster_size < 1:
        raise ValueError(f"the cluster size must be at least 1, not {cluster_size}")


def normal_trials_per_arm(
    p0: float,
    p1: float,
    alpha: float = 0.05,
    power: float = 0.8,
    cluster_size: int = 1,
    icc: float = 0.0,
    family: int = 1,
) -> int | None:
    """``trials_per_arm``'s normal approximation, or ``None`` where the solver finds no
    answer (an effect so large that it needs fewer observations than the solver searches:
    statsmodels' NaN, or a failure to converge); its warnings are kept from the terminal.
    The inputs are checked (``check_power_inputs``)."""
    check_power_inputs(p0, p1, alpha, power, cluster_size, icc, family)
    es = abs(float(proportion_effectsize(p1, p0)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            n_obs = float(
                NormalIndPower().solve_power(
                    effect_size=es, alpha=alpha / family, power=power, ratio=1.0
                )
            )
        except (ValueError, RuntimeError, ArithmeticError):
            return None
    if not math.isfinite(n_obs) or n_obs <= 0:
        return None
    deff = 1 + (cluster_size - 1) * icc
    return max(1, int(math.ceil(n_obs * deff / cluster_size)))


def trials_per_arm(
    p0: float,
    p1: float,
    alpha: float = 0.05,
    power: float = 0.8,
    cluster_size: int = 1,
    icc: float = 0.0,
    family: int = 1,
) -> int:
    """Trials per arm to detect p0 vs p1 (two-sided) by the normal approximation (Cohen's
    h, ``NormalIndPower``), inflating the independent-sample size by the design effect
    1 + (m - 1) * ICC for m correlated observations per trial. The ICC must lie in [0, 1]:
    a negative one would make the design effect fall below 1.

    ``family``: how many tests the comparison's p will be Holm-adjusted over (the report's
    Comparisons adjust over all of a run's comparisons). The test is planned at
    ``alpha / family``, Holm's first and strictest step: Holm rejects whatever that
    Bonferroni level rejects, so the power holds whatever the other tests find.

    This is the textbook answer, right for many trials; with few (below about 30 per arm)
    it overstates the power of the report's permutation test, and can fall below the
    fewest trials at which that test can reject at all: ``analysis.power.plan_trials``
    gives the number to use. A ``ValueError`` where the inputs mean nothing or the solver
    has no answer."""
    n = normal_trials_per_arm(p0, p1, alpha, power, cluster_size, icc, family)
    if n is None:
        raise ValueError(
            f"the normal approximation has no answer for {p0:g} -> {p1:g} (an effect this "
            "large needs fewer observations than it can solve for)"
        )
    return n


#: the trial-level design factors whose levels make a design cell (the report's cells, with
#: the raw population string): trials of one cell share their true rates, trials of two
#: cells need not
CELL_FACTORS = (
    "condition",
    "topology",
    "disclosure",
    "adversary_arm",
    "population",
    "prompt_variant",
    "defence",
    "payload",
)


def cell_factors(df: pd.DataFrame) -> list[str]:
    """The ``CELL_FACTORS`` that vary in ``df`` (the ones that split it into cells)."""
    return [c for c in CELL_FACTORS if c in df.columns and df[c].nunique(dropna=False) > 1]


def _cell_trial_counts(df: pd.DataFrame, outcome: str, cells: list[str] | None) -> pd.DataFrame:
    """Per trial its successes ``k``, valid outcomes ``n`` and design cell ``cell`` (a code;
    one cell when no factor varies)."""
    cells = cell_factors(df) if cells is None else cells
    data = df.dropna(subset=[outcome])
    t = data.groupby("trial_id", observed=True)[outcome].agg(k="sum", n="count")
    if cells:
        firsts = data.drop_duplicates("trial_id").set_index("trial_id")[cells]
        codes = firsts.groupby(cells, observed=True, dropna=False).ngroup()
        t["cell"] = codes.reindex(t.index).to_numpy()
    else:
        t["cell"] = 0
    return t.reset_index()


def icc_estimate(df: pd.DataFrame, outcome: str = "stag", cells: list[str] | None = None) -> float:
    """One-way ANOVA estimate of the intra-trial correlation of a 0/1 outcome, with trials
    nested in design cells: between-trial variation is measured around each cell's own
    rate, so cells that differ in their true rates do not pass for within-trial
    correlation. ``cells`` are the columns that make a cell (default: the
    ``CELL_FACTORS`` that vary in ``df``; ``[]`` pools everything into one cell). It can
    be negative (trials vary less than chance would make them): ``clamped_icc`` says what
    to use for planning; NaN when no cell has two trials."""
    t = _cell_trial_counts(df, outcome, cells)
    n_trials, n_cells = len(t), int(t["cell"].nunique())
    if n_trials - n_cells < 1:
        return float("nan")
    k, n = t["k"].to_numpy(float), t["n"].to_numpy(float)
    cell = t["cell"].to_numpy()
    cell_k = pd.Series(k).groupby(cell).transform("sum").to_numpy()
    cell_n = pd.Series(n).groupby(cell).transform("sum").to_numpy()
    total = n.sum()
    # the ANOVA's "n0" for trials nested in cells (Searle): the effective trial size
    m0 = (total - (n**2 / cell_n).sum()) / (n_trials - n_cells)
    msb = (n * (k / n - cell_k / cell_n) ** 2).sum() / (n_trials - n_cells)
    msw = (k - k**2 / n).sum() / (total - n_trials) if total > n_trials else 0.0
    denom = msb + (m0 - 1) * msw
    return float((msb - msw) / denom) if denom > 0 else 0.0


def cluster_sizes(
    df: pd.DataFrame, outcome: str = "stag", cells: list[str] | None = None
) -> pd.DataFrame:
    """Per design cell (``cells`` as in ``icc_estimate``): its trials and their mean number
    of valid outcomes (the cluster size a trial of that cell brings), smallest first. The
    cell is named by its factors' levels."""
    cells = cell_factors(df) if cells is None else cells
    t = _cell_trial_counts(df, outcome, cells)
    per = t.groupby("cell").agg(trials=("n", "size"), cluster_size=("n", "mean"))
    if cells:
        # a cell named by one of its trials (they share its levels), not a row-wise apply
        # over every trial (13 s at 100,000 trials under pandas 3)
        last = t.drop_duplicates("cell", keep="last")
        data = df.dropna(subset=[outcome]).drop_duplicates("trial_id")
        levels = data.set_index("trial_id")[cells].astype(str).reindex(last["trial_id"])
        names = [
            "; ".join(f"{c}={v}" for c, v in zip(cells, row, strict=True))
            for row in levels.itertuples(index=False, name=None)
        ]
        name_of = dict(zip(last["cell"], names, strict=True))
    else:
        name_of = {0: "all trials (one design cell)"}
    per = per.reset_index(names="code")
    per["cell"] = [name_of[c] for c in per["code"]]
    return per.sort_values(["cluster_size", "cell"]).reset_index(drop=True)[
        ["cell", "trials", "cluster_size"]
    ]


def clamped_icc(icc: float) -> tuple[float, str | None]:
    """The ICC to plan with, and a note when the estimate had to be changed."""
    if math.isnan(icc):
        return 0.0, "the ICC cannot be estimated (no design cell has two trials); using 0"
    if icc < 0:
        return 0.0, (
            f"the ICC estimate {icc:.3f} is below 0 (trials vary less than chance); "
            "clamped to 0, so the design effect is 1"
        )
    if icc > 1:
        return 1.0, f"the ICC estimate {icc:.3f} is above 1; clamped to 1"
    return icc, None
