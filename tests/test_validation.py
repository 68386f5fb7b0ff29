"""Validation of the analysis: planted populations are classified as planted, A/A runs keep
the false-positive rate near alpha, and a planted effect is found with the power that
``trials_per_arm`` predicts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stagbench.analysis import archetypes, metrics, stats
from stagbench.analysis.tables import agent_rounds

from analysis_helpers import run_spec

PLANTED = """
name = "planted"
seed = 5
repetitions = 40
[game]
rounds = 10
[factors]
models = [["scripted/grim-trigger", "scripted/always-stag", "scripted/always-stag"],
          ["scripted/tit-for-tat", "scripted/always-stag", "scripted/always-stag"]]
topologies = ["complete", "ring", "star(hub=0)"]
adversaries = ["soft(p=0.4,count=1)"]
"""
TRUTH = {
    "scripted/grim-trigger": archetypes.DEFECTION_PRONE,
    "scripted/always-stag": archetypes.COOPERATION_PERSISTENT,
    "scripted/tit-for-tat": archetypes.ADAPTIVE,
}


def test_planted_populations_are_recovered(tmp_path: Path) -> None:
    df, _ = agent_rounds(run_spec(PLANTED, tmp_path))
    at = archetypes.classify(metrics.agent_trials(df))
    at["evidence"] = [archetypes.has_evidence(r) for _, r in at.iterrows()]
    for model, truth in TRUTH.items():
        g = at[at["model"] == model]
        judged = g[g["evidence"]]
        accuracy = float((judged["archetype"] == truth).mean())
        coverage = len(judged) / len(g)
        assert accuracy >= 0.95, (model, accuracy, judged["archetype"].value_counts().to_dict())
        assert coverage >= 0.9, (model, coverage)
    labels = archetypes.model_labels(at, n_boot=200).set_index("model")
    for model, truth in TRUTH.items():
        assert labels.loc[model, "label"] == truth
        assert labels.loc[model, "confidence"] >= 0.95
    stab = archetypes.stability(at).set_index("model")
    assert stab["halves_agree"].all() and (stab["seed_agreement"] >= 0.9).all()


def simulate(
    rng: np.random.Generator, trials: int, p: float, icc: float, m: int, arm: str
) -> pd.DataFrame:
    """Trials whose own stag propensity is Beta-distributed (ICC = 1 / (a + b + 1))."""
    ab = 1 / icc - 1
    props = rng.beta(p * ab, (1 - p) * ab, size=trials)
    k = rng.binomial(m, props)
    ids = [f"{arm}{i}" for i in range(trials)]
    rows = {
        "trial_id": np.repeat(ids, m),
        "disclosure": arm,
        "stag": np.concatenate([np.r_[np.ones(x), np.zeros(m - x)] for x in k]),
    }
    return pd.DataFrame(rows)


def test_aa_false_positive_rate_near_alpha() -> None:
    rng = np.random.default_rng(11)
    sims, hits_perm, hits_fisher = 300, 0, 0
    for i in range(sims):
        df = pd.concat(
            [simulate(rng, 30, 0.6, 0.3, 15, "explicit"), simulate(rng, 30, 0.6, 0.3, 15, "silent")]
        )
        c = stats.compare(df, "disclosure", "explicit", "silent", n_perm=400, seed=i)
        hits_perm += c.permutation_p < 0.05
        hits_fisher += c.fisher_p < 0.05
    fpr = hits_perm / sims
    assert 0.02 <= fpr <= 0.085, fpr
    # Pooled Fisher ignores clustering and is far too eager: why the clustered test exists.
    assert hits_fisher / sims > 0.25


def test_planted_effect_found_with_predicted_power() -> None:
    p0, p1, icc, m = 0.5, 0.7, 0.2, 15
    n = stats.trials_per_arm(p0, p1, power=0.8, cluster_size=m, icc=icc)
    assert 15 <= n <= 60
    rng = np.random.default_rng(3)
    sims, hits = 200, 0
    for i in range(sims):
        df = pd.concat(
            [simulate(rng, n, p0, icc, m, "explicit"), simulate(rng, n, p1, icc, m, "silent")]
        )
        hits += (
            stats.compare(df, "disclosure", "explicit", "silent", n_perm=400, seed=i).permutation_p
            < 0.05
        )
    assert 0.68 <= hits / sims <= 0.93, (n, hits / sims)


def test_a_plan_for_a_holm_family_has_its_power_under_the_adjustment() -> None:
    """Planted effect p0 0.5 -> p1 0.7 in one of three comparisons whose other two are
    null: with trials planned for the family (alpha / 3), the effect's Holm-adjusted
    permutation p is below 0.05 in about 80% of runs; a plan for one test falls short."""
    p0, p1, icc, m = 0.5, 0.7, 0.2, 15
    rng = np.random.default_rng(11)

    def power(n: int, sims: int = 120) -> float:
        hits = 0
        for i in range(sims):
            df = pd.concat([simulate(rng, n, p0, icc, m, "a"), simulate(rng, n, p1, icc, m, "b")])
            c = stats.compare(df, "disclosure", "a", "b", n_perm=400, seed=i, family=3)
            # the two null comparisons' p: uniform, as a permutation p is under the null
            ps = [c.permutation_p, *rng.uniform(size=2)]
            hits += stats.holm(ps)[0] < 0.05
        return hits / sims

    planned = stats.trials_per_arm(p0, p1, cluster_size=m, icc=icc, family=3)
    single = stats.trials_per_arm(p0, p1, cluster_size=m, icc=icc)
    assert planned > single
    hit, short = power(planned), power(single)
    assert 0.7 <= hit <= 0.93
    assert short < 0.75


def test_holm_is_statsmodels_holm() -> None:
    """``stats.holm`` (written out: statsmodels' runs a garbage collection per call) gives
    statsmodels' adjusted p on random, tied, tiny and NaN-holding families."""
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(5)
    families = [rng.uniform(size=m) ** 3 for m in (1, 2, 3, 7, 40)]
    families += [np.array([0.01, 0.01, 0.04, 0.04, 0.5]), np.array([1e-12, 0.9, 1.0])]
    for ps in families:
        want = multipletests(ps, method="holm")[1]
        assert stats.holm(ps.tolist()) == pytest.approx(want.tolist(), rel=1e-12)
    got = stats.holm([0.02, float("nan"), 0.01])
    assert got[0] == pytest.approx(0.04) and got[2] == pytest.approx(0.03) and got[1] != got[1]


def test_wilson_holm_icc_and_power_basics() -> None:
    lo, hi = stats.wilson(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    rng = np.random.default_rng(0)
    df = pd.concat([simulate(rng, 400, 0.5, 0.3, 15, "x")])
    assert stats.icc_estimate(df) == pytest.approx(0.3, abs=0.06)
    assert stats.trials_per_arm(0.5, 0.7, cluster_size=15, icc=0.0) < stats.trials_per_arm(
        0.5, 0.7, cluster_size=15, icc=0.3
    )
    with pytest.raises(ValueError):
        stats.trials_per_arm(0.5, 0.5)


def test_gee_recovers_a_round_trend() -> None:
    rng = np.random.default_rng(1)
    rows = []
    for t in range(120):
        u = rng.normal(0, 0.5)
        disc = "explicit" if t % 2 else "silent"
        for r in range(1, 6):
            for _ in range(3):
                logit = 1.0 - 0.4 * r + (0.8 if disc == "explicit" else 0.0) + u
                rows.append(
                    {
                        "trial_id": f"t{t}",
                        "round": r,
                        "disclosure": disc,
                        "stag": float(rng.random() < 1 / (1 + np.exp(-logit))),
                    }
                )
    fit = stats.gee_logit(pd.DataFrame(rows), "stag ~ C(disclosure) + round")
    assert (
        fit.loc["round", "coef"] == pytest.approx(-0.4, abs=0.15) and fit.loc["round", "p"] < 0.001
    )
    assert fit.loc["C(disclosure)[T.silent]", "coef"] < -0.3


def test_vectorised_classifier_matches_the_rule(tmp_path: Path) -> None:
    spec = PLANTED.replace("repetitions = 40", "repetitions = 6").replace(
        '["soft(p=0.4,count=1)"]', '["soft(p=0.4,count=1)", "none", "delayed(k=7,count=1)"]'
    )
    df, _ = agent_rounds(run_spec(spec, tmp_path))
    at = metrics.agent_trials(df)
    fast = archetypes.classify(at)["archetype"].tolist()
    assert fast == [archetypes.classify_row(r) for _, r in at.iterrows()]
    assert {archetypes.UNCLASSIFIED, archetypes.ADAPTIVE} <= set(fast)


def test_gee_sample_keeps_whole_trials() -> None:
    df = pd.DataFrame({"trial_id": [f"t{i // 5}" for i in range(50)], "stag": 1.0})
    sample = stats.gee_sample(df, max_trials=4, seed=1)
    assert sample["trial_id"].nunique() == 4 and len(sample) == 20
    assert stats.gee_sample(df, max_trials=None) is df
