"""Inference with statsmodels. Agent-rounds of one trial are not independent, so every
comparison has a trial-clustered test beside the pooled one, and models use GEE with
trials as clusters.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_confint, proportion_effectsize


def wilson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    if n == 0:
        return (math.nan, math.nan)
    lo, hi = proportion_confint(k, n, alpha=alpha, method="wilson")
    return float(lo), float(hi)


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


def permutation_test(
    ka: np.ndarray,
    na: np.ndarray,
    kb: np.ndarray,
    nb: np.ndarray,
    n_perm: int,
    rng: np.random.Generator,
) -> float:
    """Two-sided test of equal pooled rates, permuting whole trials between arms."""
    k = np.concatenate([ka, kb]).astype(float)
    n = np.concatenate([na, nb]).astype(float)
    m = len(ka)
    observed = ka.sum() / na.sum() - kb.sum() / nb.sum()
    labels = np.zeros(len(k), dtype=bool)
    labels[:m] = True
    extreme = 0
    batch = max(1, min(n_perm, 2_000_000 // len(k)))  # bounded memory on large runs
    for start in range(0, n_perm, batch):
        perms = np.array([rng.permutation(labels) for _ in range(min(batch, n_perm - start))])
        ka_p, na_p = perms @ k, perms @ n
        kb_p, nb_p = k.sum() - ka_p, n.sum() - na_p
        diffs = ka_p / na_p - kb_p / nb_p
        extreme += int(np.sum(np.abs(diffs) >= abs(observed) - 1e-12))
    return float((extreme + 1) / (n_perm + 1))


def cluster_bootstrap_ci(
    ka: np.ndarray,
    na: np.ndarray,
    kb: np.ndarray,
    nb: np.ndarray,
    n_boot: int,
    rng: np.random.Generator,
) -> tuple[float, float]:
    parts = []
    batch = max(1, min(n_boot, 2_000_000 // (len(ka) + len(kb))))  # bounded memory
    for start in range(0, n_boot, batch):
        size = min(batch, n_boot - start)
        ia = rng.integers(0, len(ka), size=(size, len(ka)))
        ib = rng.integers(0, len(kb), size=(size, len(kb)))
        parts.append(ka[ia].sum(1) / na[ia].sum(1) - kb[ib].sum(1) / nb[ib].sum(1))
    lo, hi = np.percentile(np.concatenate(parts), [2.5, 97.5])
    return float(lo), float(hi)


def compare(
    df: pd.DataFrame,
    factor: str,
    a: str,
    b: str,
    outcome: str = "stag",
    n_perm: int = 2000,
    seed: int = 0,
) -> Comparison:
    """Arm ``a`` vs arm ``b`` of ``factor`` on a 0/1 outcome: Fisher and chi-square on pooled
    counts, a trial-clustered permutation test, and a trial-clustered bootstrap CI."""
    rng = np.random.default_rng(seed)
    ta = _trial_rates(df[df[factor] == a], outcome)
    tb = _trial_rates(df[df[factor] == b], outcome)
    if ta.empty or tb.empty:
        raise ValueError(f"no data for {factor}={a!r} or {factor}={b!r}")
    ka, na, kb, nb = (x.to_numpy(dtype=float) for x in (ta["k"], ta["n"], tb["k"], tb["n"]))
    table = np.array([[ka.sum(), na.sum() - ka.sum()], [kb.sum(), nb.sum() - kb.sum()]])
    fisher_p = float(sps.fisher_exact(table)[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chi2_p = float(sps.chi2_contingency(table)[1]) if (table.sum(0) > 0).all() else 1.0
    ra, rb = ka.sum() / na.sum(), kb.sum() / nb.sum()
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
        permutation_p=permutation_test(ka, na, kb, nb, n_perm, rng),
        diff=float(ra - rb),
        diff_ci=cluster_bootstrap_ci(ka, na, kb, nb, n_perm, rng),
    )


def holm(pvalues: list[float]) -> list[float]:
    if not pvalues:
        return []
    return [float(p) for p in multipletests(pvalues, method="holm")[1]]


def comparison_family(
    df: pd.DataFrame, pairs: list[tuple[str, str, str]], outcome: str = "stag", seed: int = 0
) -> pd.DataFrame:
    """Several comparisons as one family, with Holm-adjusted clustered p-values."""
    rows = []
    for factor, a, b in pairs:
        try:
            rows.append(compare(df, factor, a, b, outcome, seed=seed).as_dict())
        except ValueError:
            continue
    out = pd.DataFrame(rows)
    if not out.empty:
        out["permutation_p_holm"] = holm(out["permutation_p"].tolist())
        out["fisher_p_holm"] = holm(out["fisher_p"].tolist())
    return out


GEE_MAX_TRIALS = 3000


def gee_sample(
    df: pd.DataFrame, max_trials: int | None = GEE_MAX_TRIALS, seed: int = 0
) -> pd.DataFrame:
    """All rows of at most ``max_trials`` trials drawn at random (GEE cost grows with rows;
    a few thousand trials pin the coefficients down well)."""
    ids = df["trial_id"].astype(str).unique()
    if max_trials is None or len(ids) <= max_trials:
        return df
    keep = set(np.random.default_rng(seed).choice(ids, size=max_trials, replace=False))
    return df[df["trial_id"].astype(str).isin(keep)]


def gee_logit(df: pd.DataFrame, formula: str = "stag ~ C(disclosure) * round") -> pd.DataFrame:
    """Logistic GEE, exchangeable correlation within trials. Factors with one level are
    dropped from the formula by the caller (see ``default_formula``)."""
    import statsmodels.api as sm
    import statsmodels.formula.api as smf

    data = df.dropna(subset=["stag"]).copy()
    for col in data.select_dtypes("category").columns:
        data[col] = data[col].astype(str)
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
    ci = res.conf_int()
    return pd.DataFrame(
        {
            "coef": res.params,
            "se": res.bse,
            "z": res.tvalues,
            "p": res.pvalues,
            "odds_ratio": np.exp(res.params),
            "ci_lo": ci[0],
            "ci_hi": ci[1],
        }
    )


def default_formula(df: pd.DataFrame) -> str:
    """``stag ~ condition * round + model`` using only factors that vary in the data."""
    terms = [c for c in ("disclosure", "adversary_kind", "topology") if df[c].nunique() > 1]
    rhs = " + ".join(f"C({c}) * round" for c in terms) or "round"
    if df["model"].nunique() > 1:
        rhs += " + C(model)"
    return f"stag ~ {rhs}"


def trials_per_arm(
    p0: float,
    p1: float,
    alpha: float = 0.05,
    power: float = 0.8,
    cluster_size: int = 1,
    icc: float = 0.0,
) -> int:
    """Trials per arm to detect p0 vs p1 (two-sided), inflating the independent-sample size
    by the design effect 1 + (m - 1) * ICC for m correlated observations per trial."""
    es = abs(float(proportion_effectsize(p1, p0)))
    if es == 0:
        raise ValueError("p0 and p1 are equal: no effect to detect")
    n_obs = NormalIndPower().solve_power(effect_size=es, alpha=alpha, power=power, ratio=1.0)
    deff = 1 + (cluster_size - 1) * icc
    return int(math.ceil(float(n_obs) * deff / cluster_size))


def icc_estimate(df: pd.DataFrame, outcome: str = "stag") -> float:
    """One-way ANOVA estimate of the intra-trial correlation of a 0/1 outcome."""
    t = _trial_rates(df, outcome)
    if len(t) < 2:
        return float("nan")
    k, n = t["k"].to_numpy(float), t["n"].to_numpy(float)
    grand = k.sum() / n.sum()
    m0 = (n.sum() - (n**2).sum() / n.sum()) / (len(n) - 1)
    msb = (n * (k / n - grand) ** 2).sum() / (len(n) - 1)
    msw = (k - k**2 / n).sum() / (n.sum() - len(n))
    denom = msb + (m0 - 1) * msw
    return float((msb - msw) / denom) if denom > 0 else 0.0
