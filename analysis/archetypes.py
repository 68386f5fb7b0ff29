"""Archetypes of how an agent reacts to betrayal, with the rule and thresholds in one place.

Per agent-trial (from ``metrics.agent_trials``), in this order:
1. Pre-emptive defector: hunted hare before seeing any other player hunt hare.
2. Unclassified: no trigger seen, or fewer than ``min_rounds_after`` valid actions after it.
3. Defection-Prone: hare in the round after the trigger and never stag again.
4. Cooperation-Persistent: stag in the round after the trigger and in at least
   ``persist_min_stag`` of the rounds after it.
5. Adaptive/Forgiving: hunted hare after the trigger, then returned to stag.
6. Unclassified otherwise (mixed evidence).

Per model: the most common label among its classified agent-trials, with a bootstrap
over trials giving how often resampling keeps that label (its confidence).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

PRE_EMPTIVE = "Pre-emptive defector"
DEFECTION_PRONE = "Defection-Prone"
COOPERATION_PERSISTENT = "Cooperation-Persistent"
ADAPTIVE = "Adaptive/Forgiving"
UNCLASSIFIED = "Unclassified"
LABELS = (DEFECTION_PRONE, COOPERATION_PERSISTENT, ADAPTIVE, PRE_EMPTIVE, UNCLASSIFIED)


@dataclass(frozen=True)
class Rule:
    min_rounds_after: int = 2
    persist_min_stag: float = 0.75


RULE = Rule()


def classify_row(row: pd.Series, rule: Rule = RULE) -> str:
    if row["pre_emptive"]:
        return PRE_EMPTIVE
    if pd.isna(row["trigger_round"]) or row["rounds_after"] < rule.min_rounds_after:
        return UNCLASSIFIED
    if row["adaptation"] == "permanent" and row["switched"]:
        return DEFECTION_PRONE
    if not row["switched"] and row["stag_rate_after"] >= rule.persist_min_stag:
        return COOPERATION_PERSISTENT
    if row["returned"]:
        return ADAPTIVE
    return UNCLASSIFIED


def has_evidence(row: pd.Series, rule: Rule = RULE) -> bool:
    """Whether an agent-trial can be classified at all (a trigger and enough rounds after)."""
    return bool(row["pre_emptive"]) or (
        not pd.isna(row["trigger_round"]) and row["rounds_after"] >= rule.min_rounds_after
    )


def classify(agent_trials: pd.DataFrame, rule: Rule = RULE) -> pd.DataFrame:
    """``agent_trials`` with an ``archetype`` column: ``classify_row`` over whole columns."""
    out = agent_trials.copy()
    if out.empty:
        out["archetype"] = []
        return out
    pre = out["pre_emptive"].astype(bool).to_numpy()
    short = (out["trigger_round"].isna() | (out["rounds_after"] < rule.min_rounds_after)).to_numpy()
    switched = out["switched"].astype(bool).to_numpy()
    dp = switched & (out["adaptation"] == "permanent").to_numpy()
    cp = ~switched & (out["stag_rate_after"] >= rule.persist_min_stag).fillna(False).to_numpy()
    adaptive = out["returned"].astype(bool).to_numpy()
    out["archetype"] = np.select(
        [pre, short, dp, cp, adaptive],
        [PRE_EMPTIVE, UNCLASSIFIED, DEFECTION_PRONE, COOPERATION_PERSISTENT, ADAPTIVE],
        default=UNCLASSIFIED,
    )
    return out


def _modal(labels: pd.Series) -> str:
    classified = labels[labels != UNCLASSIFIED]
    if classified.empty:
        return UNCLASSIFIED
    counts = classified.value_counts()
    return str(counts.index[0])


def model_labels(
    classified: pd.DataFrame, n_boot: int = 500, seed: int = 0, by: str = "model"
) -> pd.DataFrame:
    """Per model: label, share of its agent-trials with it, and bootstrap confidence
    (resampling trials with replacement, how often the modal label stays the same)."""
    rng = np.random.default_rng(seed)
    rows = []
    for model, g in classified.groupby(by, observed=True):
        label = _modal(g["archetype"])
        # trials x labels count matrix; a resample is a weighted sum of its rows.
        counts_by_trial = pd.crosstab(g["trial_id"].astype(str), g["archetype"])
        ranked = [c for c in counts_by_trial.columns if c != UNCLASSIFIED]
        matrix = counts_by_trial[ranked].to_numpy(dtype=float) if ranked else None
        same = 0
        if matrix is not None and label != UNCLASSIFIED:
            n_trials = matrix.shape[0]
            target = ranked.index(label)
            for _ in range(n_boot):
                weights = np.bincount(rng.integers(0, n_trials, n_trials), minlength=n_trials)
                totals = weights @ matrix
                same += totals.max() > 0 and int(np.argmax(totals)) == target
        elif label == UNCLASSIFIED:
            same = n_boot
        counts = g["archetype"].value_counts()
        rows.append(
            {
                by: model,
                "label": label,
                "share": float(counts.get(label, 0) / len(g)),
                "confidence": same / n_boot if n_boot else float("nan"),
                "agent_trials": len(g),
                "unclassified": float(counts.get(UNCLASSIFIED, 0) / len(g)),
                **{f"n_{lab}": int(counts.get(lab, 0)) for lab in LABELS},
            }
        )
    return pd.DataFrame(rows)


def stability(classified: pd.DataFrame, by: str = "model") -> pd.DataFrame:
    """Does each model keep its label across cohorts: split halves of trials (by trial id
    parity) and repetition (seed) cohorts."""
    rows = []
    for model, g in classified.groupby(by, observed=True):
        ids = sorted(g["trial_id"].unique())
        half = {t: i % 2 for i, t in enumerate(ids)}
        halves = [_modal(g[g["trial_id"].map(half) == h]["archetype"]) for h in (0, 1)]
        reps = [_modal(x["archetype"]) for _, x in g.groupby("repetition", observed=True)]
        overall = _modal(g["archetype"])
        rows.append(
            {
                by: model,
                "label": overall,
                "half_a": halves[0],
                "half_b": halves[1],
                "halves_agree": halves[0] == halves[1],
                "seed_cohorts": len(reps),
                "seed_agreement": float(np.mean([r == overall for r in reps])) if reps else np.nan,
            }
        )
    return pd.DataFrame(rows)
