"""Calibrated archetypes on planted populations with known answers, noise included: each
strategy gets its label (or none, when it is noise or its forgiveness was never tested),
and noise never gets a confident behavioural label."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from stagbench.agents.base import AgentView, Utterance
from stagbench.agents.models.base import ChatMessage
from stagbench.agents.models.providers.mock import register_mock
from stagbench.agents.scripted import STRATEGIES, ScriptedAgent, strategy
from stagbench.analysis import archetypes, metrics, report, stats
from stagbench.analysis.archetypes import (
    ADAPTIVE,
    COOPERATION_PERSISTENT,
    DEFECTION_PRONE,
    PRE_EMPTIVE,
    UNCLASSIFIED,
)
from stagbench.analysis.tables import agent_rounds
from stagbench.games import Action

from analysis_helpers import run_spec

POPULATIONS = [
    ["scripted/grim-trigger", "scripted/always-stag", "scripted/random(p=0.5)"],
    ["scripted/tit-for-tat", "scripted/always-stag", "scripted/always-stag"],
    ["scripted/generous-tit-for-tat", "scripted/always-stag", "scripted/random(p=0.7)"],
    ["scripted/forgive-after(k=1)", "scripted/always-stag", "scripted/always-stag"],
    ["scripted/always-hare", "scripted/random(p=0.3)", "scripted/always-stag"],
    ["scripted/tit-for-tat", "scripted/tit-for-tat", "scripted/tit-for-tat"],
]
PLANTED = f"""
name = "planted-noise"
seed = 5
repetitions = 30
[game]
rounds = 10
[factors]
models = {POPULATIONS!r}
topologies = ["complete", "ring", "star(hub=0)"]
adversaries = ["soft(p=0.4,count=1)"]
""".replace("'", '"')
#: what each strategy is; None: noise, which must stay unlabelled
TRUTH: dict[str, str | None] = {
    "scripted/grim-trigger": DEFECTION_PRONE,
    "scripted/always-stag": COOPERATION_PERSISTENT,
    "scripted/tit-for-tat": ADAPTIVE,
    "scripted/generous-tit-for-tat": ADAPTIVE,
    "scripted/forgive-after(k=1)": ADAPTIVE,
    "scripted/always-hare": PRE_EMPTIVE,
    "scripted/random(p=0.5)": None,
    "scripted/random(p=0.7)": None,
    "scripted/random(p=0.3)": None,
}
ALL_TFT = "scripted/tit-for-tat+scripted/tit-for-tat+scripted/tit-for-tat"


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, pd.DataFrame]:
    df, _ = agent_rounds(run_spec(PLANTED, tmp_path_factory.mktemp("planted")))
    at = archetypes.classify(metrics.agent_trials(df))
    at["cell"] = at["population"].astype(str) + " | " + at["topology"].astype(str)
    return at, archetypes.group_labels(at, ["model", "cell"], n_boot=200)


def validation_figures(at: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Per strategy: accuracy and coverage of the per agent-trial pattern (signal only),
    share of groups given the true label, and for noise the false-label rate."""
    rows = []
    for model, truth in TRUTH.items():
        g = at[(at["model"] == model) & ~at["population"].astype(str).eq(ALL_TFT)]
        judged = g[g["archetype"] != UNCLASSIFIED]
        lab = labels[(labels["model"] == model) & ~labels["cell"].str.startswith(ALL_TFT)]
        rows.append(
            {
                "model": model,
                "truth": truth or "noise",
                "pattern_accuracy": float((judged["archetype"] == truth).mean())
                if truth
                else float("nan"),
                "coverage": len(judged) / len(g),
                "groups": len(lab),
                "groups_right": int((lab["label"] == (truth or UNCLASSIFIED)).sum()),
                "false_labels": int((lab["label"] != UNCLASSIFIED).sum()) if truth is None else 0,
                "min_confidence": float(lab["confidence"].min()),
            }
        )
    return pd.DataFrame(rows)


def test_planted_strategies_get_their_label_and_noise_none(
    planted: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    at, labels = planted
    figures = validation_figures(at, labels)
    print("\n" + figures.to_string())  # the validation figures (pytest -s shows them)
    for row in figures.itertuples():
        pops = sum(row.model in pop for pop in POPULATIONS[:-1])  # the all-TFT one apart
        assert row.groups == 3 * pops  # one per topology and population
        assert row.groups_right == row.groups, (row.model, labels[labels["model"] == row.model])
        if row.truth != "noise":
            # generous tit-for-tat forgives at once a third of the time: those agent-trials
            # look cooperation-persistent, the group is still Adaptive/Forgiving
            stochastic = row.model == "scripted/generous-tit-for-tat"
            assert row.pattern_accuracy >= (0.7 if stochastic else 0.95), row
            assert row.min_confidence >= 0.8, row
        else:
            assert row.false_labels == 0
    signal = figures[figures["truth"] != "noise"]
    assert (signal["groups_right"] == signal["groups"]).all()


def test_noise_is_labelled_unclassified_with_confidence(
    planted: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    _, labels = planted
    noise = labels[labels["model"].str.startswith("scripted/random")]
    assert (noise["label"] == UNCLASSIFIED).all()
    # the noise shows behavioural patterns in single trials; the null explains them
    assert (noise["modal_pattern"] != UNCLASSIFIED).all()
    assert noise["confidence"].median() >= 0.9


def test_all_tit_for_tat_is_not_defection_prone(
    planted: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    """Tit-for-tat answering tit-for-tat never sees a clean round after a defection: its
    forgiveness is untested, so it is not called Defection-Prone."""
    at, labels = planted
    tft = labels[labels["cell"].str.startswith(ALL_TFT)]
    assert len(tft) == 3 and (tft["label"] == UNCLASSIFIED).all()
    rows = at[at["population"].astype(str) == ALL_TFT]
    switched = rows[rows["switched"]]
    assert len(switched) > 0 and not switched["forgive_chance"].any()
    assert DEFECTION_PRONE not in set(rows["archetype"])


def test_labels_are_stable_across_halves(planted: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    at, _ = planted
    signal = at[at["model"].isin([m for m, t in TRUTH.items() if t])]
    signal = signal[signal["population"].astype(str) != ALL_TFT]
    stab = archetypes.stability(signal, "model")
    print("\n" + stab.to_string())
    # a label whose halves or cohorts are too small to carry it is not tested, and says
    # so (generous tit-for-tat: its reaction is measured only in the early rounds where
    # some of its agent-trials were still untriggered)
    tested = stab[stab["note"] == ""]
    assert len(tested) >= 5, stab
    assert tested["halves_agree"].all() and (tested["seed_agreement"] >= 0.75).all()
    assert stab.loc[stab["note"] != "", "note"].str.startswith("too few trials to test").all()


NOISE = """
name = "noise-{seed}"
seed = {seed}
repetitions = 20
[game]
rounds = 5
[factors]
models = [["scripted/random(p=0.3)", "scripted/random(p=0.5)", "scripted/random(p=0.7)"]]
topologies = ["complete", "ring"]
adversaries = ["soft(p=0.5,count=1)"]
"""


def test_false_label_rate_on_noise_is_low(tmp_path: Path) -> None:
    """Short games as in the published study (5 rounds, 20 trials per cell), a population
    of noise strategies only, six seeds: the share of (strategy, cell) groups given a
    behavioural label, the false-label rate, stays under 5%; none is confident."""
    groups = []
    for seed in range(6):
        df, _ = agent_rounds(run_spec(NOISE.format(seed=seed), tmp_path / str(seed)))
        at = archetypes.classify(metrics.agent_trials(df))
        groups.append(archetypes.group_labels(at, ["model", "topology"], n_boot=100))
    labels = pd.concat(groups, ignore_index=True)
    assert len(labels) == 6 * 3 * 2
    labelled = labels[labels["label"] != UNCLASSIFIED]
    rate = len(labelled) / len(labels)
    print(f"\nfalse-label rate on noise: {len(labelled)}/{len(labels)} = {rate:.3f}")
    assert rate <= 0.05
    assert (labelled["confidence"] < 0.95).all()


def test_too_few_agent_trials_stay_unclassified() -> None:
    rows = pd.DataFrame(
        {
            "trial_id": ["t1", "t2"],
            "model": "m",
            "archetype": [DEFECTION_PRONE] * 2,
            "n_valid": [5, 5],
            "n_hare": [3, 3],
            "pre_n": [2, 2],
            "pre_hare": [0, 0],
            "post_n": [3, 3],
            "post_stag": [0, 0],
            "repetition": [0, 1],
        }
    )
    out = archetypes.group_labels(rows, ["model"], n_boot=50)
    assert out["label"].iloc[0] == UNCLASSIFIED and out["classified"].iloc[0] == 2


def test_features_made_once_give_the_same_labels_and_stability(
    planted: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    """The report makes the per-trial features once for the labels and their stability:
    the same tables, to the last bit, as each making its own (and features of other
    groups would not: a test that can fail)."""
    at, labels = planted
    by = ["model", "cell"]
    feats = archetypes.trial_features(at, by)
    pd.testing.assert_frame_equal(
        archetypes.group_labels(at, by, n_boot=200, features=feats), labels, check_exact=True
    )
    pd.testing.assert_frame_equal(
        archetypes.stability(at, by, features=feats), archetypes.stability(at, by), check_exact=True
    )
    other = archetypes.trial_features(at, ["model", "topology"])
    with pytest.raises(AssertionError):
        pd.testing.assert_frame_equal(
            archetypes.stability(at, by, features=other), archetypes.stability(at, by)
        )


def _hare_three_of_four(messages: list[ChatMessage], purpose: str | None) -> str:
    """Hare in rounds 1-3 of every trial, stag in round 4: a hare rate of 0.75 in each."""
    found = re.search(r"action for round (\d+)", messages[-1].content)
    assert found, messages[-1].content
    action = "stag" if int(found.group(1)) % 4 == 0 else "hare"
    return json.dumps({"reasoning": "planted", "action": action})


CONSTANT = """
name = "constant-rates"
seed = 17
repetitions = 8
[game]
n_players = 3
rounds = 4
talk_phases = 0
[agents]
max_reasks = 0
[factors]
models = [["mock/hare3of4", "scripted/always-stag", "scripted/always-stag"],
          ["mock/hare", "scripted/always-stag", "scripted/always-stag"]]
"""


def _wilson_lower(p: float, t: int, alpha: float = 0.05) -> float:
    """The one-sided Wilson lower bound of a rate ``p`` over ``t`` units."""
    z = float(sps.norm.ppf(1 - alpha))
    centre = p + z * z / (2 * t)
    return (centre - z * (p * (1 - p) / t + z * z / (4 * t * t)) ** 0.5) / (1 + z * z / t)


def test_a_constant_in_between_rate_is_not_more_certain_than_always(tmp_path: Path) -> None:
    """The red team's planted pair (redteam16 finding 3): beside two always-stag partners
    (no other player ever hunts hare, so every round is before any trigger), one model hunts
    hare in 3 rounds of 4 in every trial, another always; 8 trials each. A rate that is the
    same in every trial has no spread, and its bound is Wilson on the 8 trials, not the rate
    itself: the 75% agent is never labelled Pre-emptive defector with more confidence than
    the 100% one, and its bound lies below 0.75."""
    register_mock("hare3of4", _hare_three_of_four)
    df, _ = agent_rounds(run_spec(CONSTANT, tmp_path, llm=True))
    at = archetypes.classify(metrics.agent_trials(df))
    at = at[at["model"].astype(str).str.startswith("mock/")]
    shares = at.assign(share=at["pre_hare"] / at["pre_n"]).groupby("model")["share"]
    assert (
        shares.min().to_dict() == shares.max().to_dict() == {"mock/hare": 1, "mock/hare3of4": 0.75}
    )
    assert (at.groupby("model")["trial_id"].nunique() == 8).all()
    labels = archetypes.group_labels(at, ["model"], n_boot=200).set_index("model")
    part, whole = labels.loc["mock/hare3of4"], labels.loc["mock/hare"]
    assert part["pre_trigger_hare"] == 0.75 and whole["pre_trigger_hare"] == 1.0
    assert part["pre_trigger_hare_lo"] == pytest.approx(_wilson_lower(0.75, 8), abs=1e-12)
    assert part["pre_trigger_hare_lo"] < 0.75
    assert whole["pre_trigger_hare_lo"] == pytest.approx(_wilson_lower(1.0, 8), abs=1e-12)
    assert part["pre_trigger_hare_lo"] <= whole["pre_trigger_hare_lo"]

    def certainty(row: pd.Series) -> float:
        return float(row["confidence"]) if row["label"] == PRE_EMPTIVE else 0.0

    assert certainty(part) <= certainty(whole)
    assert part["label"] == UNCLASSIFIED and part["confidence"] == 1.0
    # the stability check labels its halves by the same bound
    stab = archetypes.stability(at, "model").set_index("model")
    assert (
        stab.loc["mock/hare3of4", "half_a"] == stab.loc["mock/hare3of4", "half_b"] == UNCLASSIFIED
    )


def _persistent(post_stag: list[int]) -> pd.DataFrame:
    """One Cooperation-Persistent agent-trial per trial, 5 rounds after its trigger with
    ``post_stag[i]`` of them stag in trial i."""
    t = len(post_stag)
    return pd.DataFrame(
        {
            "trial_id": [f"t{i:02d}" for i in range(t)],
            "model": "m",
            "archetype": [COOPERATION_PERSISTENT] * t,
            "n_valid": 6,
            "n_hare": [6 - s for s in post_stag],
            "pre_n": 1,
            "pre_hare": 0,
            "post_n": 5,
            "post_stag": post_stag,
            "repetition": range(t),
        }
    )


def test_post_trigger_bound_of_a_constant_rate_is_wilson_on_trials() -> None:
    """The post-trigger stag rate's bound (Cooperation-Persistent) the same way: 4 of 5 in
    each of 8 trials is 0.8 with no spread, its bound Wilson on the 8 trials (below 0.75),
    not 0.8; and a bootstrap draw of trials that happen to share one rate is bounded the
    same way, so a group whose pooled rate misses the threshold (six trials at 0.8, two at
    0.6) is unlabelled in every draw, not labelled in the draws that miss the 0.6 trials."""
    flat = archetypes.group_labels(_persistent([4] * 8), ["model"], n_boot=300).iloc[0]
    assert flat["post_trigger_stag"] == pytest.approx(0.8)
    assert flat["post_trigger_stag_lo"] == pytest.approx(_wilson_lower(0.8, 8), abs=1e-12)
    assert flat["label"] == UNCLASSIFIED and flat["confidence"] == 1.0
    mixed = archetypes.group_labels(_persistent([4] * 6 + [3] * 2), ["model"], n_boot=300)
    row = mixed.iloc[0]
    assert row["post_trigger_stag"] == pytest.approx(0.75) and row["post_trigger_stag_lo"] < 0.75
    assert row["label"] == UNCLASSIFIED and row["confidence"] == 1.0
    # with spread the cluster-robust bound stands: many trials near 0.9 are labelled
    spread = archetypes.group_labels(_persistent([5, 4] * 15), ["model"], n_boot=300).iloc[0]
    assert spread["label"] == COOPERATION_PERSISTENT and spread["post_trigger_stag_lo"] > 0.75


def test_no_spread_flags_every_draw_as_shared_rate_does() -> None:
    """The bootstrap's no-spread flags (screened from the draws' summed features) are
    ``stats.shared_rate`` on each draw's own trials, draw by draw: on groups whose trials
    take a few rates, so that many draws share one, over counts of many sizes."""
    rng = np.random.default_rng(3)
    seen = 0
    for trial_count, scale in ((3, 1), (5, 3), (8, 1), (12, 7), (40, 50)):
        for _ in range(20):
            n = rng.choice([4, 8], size=trial_count) * scale
            k = n * rng.choice([0.25, 0.75, 1.0], size=trial_count, p=[0.1, 0.8, 0.1])
            n[rng.random(trial_count) < 0.1] = 0  # trials with no outcome at this level
            k[n == 0] = 0
            at = pd.DataFrame(
                {
                    "trial_id": [f"t{i:02d}" for i in range(trial_count)],
                    "model": "m",
                    "archetype": PRE_EMPTIVE,
                    "n_valid": n + 1,
                    "n_hare": k,
                    "pre_n": n,
                    "pre_hare": k,
                    "post_n": 0,
                    "post_stag": 0,
                }
            )
            _, matrix, _ = next(archetypes._groups(at, ["model"]))
            w = stats.boot_weights(trial_count, 200, rng)
            flags = archetypes._flat(matrix, w)["pre"]
            kk, nn = w * k, w * n
            truth = [
                bool(nn[b].sum() > 0) and stats.shared_rate(kk[b], nn[b], kk[b].sum() / nn[b].sum())
                for b in range(len(w))
            ]
            assert flags.tolist() == truth
            seen += int(flags.sum())
    assert seen > 1000  # many draws do share one rate


def _one_trial(t: int, acts: dict[int, str | None]) -> list[dict[str, object]]:
    """The honest agent-trials of a trial of 4 rounds in which seat 0 hunts hare and seat
    ``s`` plays ``acts[s]`` every round (None: its every reply failed to parse)."""
    seats, rounds = [0, *acts], [1, 2, 3, 4]
    act = [["hare", *acts.values()] for _ in rounds]
    pay = [[0.0] * len(seats) for _ in rounds]
    heard = [[set(seats)] * len(seats) for _ in rounds]
    talk = [[(None, None)] * len(seats) for _ in rounds]
    return [
        {**metrics.agent_row(f"t{t:02d}", k, seats, rounds, act, pay, heard, talk, 3.0),
         "model": "m" if acts[s] is not None else "idle", "repetition": t}
        for k, s in enumerate(seats) if s in acts
    ]  # fmt: skip


def test_an_agent_trial_without_a_valid_action_has_no_pattern() -> None:
    """An agent that never acted saw a trigger (seat 0's hare) but made no valid action:
    its pattern was Unclassified/Inconsistent, the pattern of mixed evidence or no
    trigger. It is "no valid action", by the vectorised rule and the row rule alike; a
    group's labels count it apart, and a group of such agent-trials has no label."""
    at = pd.DataFrame([r for t in range(12) for r in _one_trial(t, {1: None, 2: "stag"})])
    out = archetypes.classify(at)
    patterns = dict(zip(out["model"], out["archetype"], strict=False))
    assert patterns == {"idle": archetypes.NO_VALID, "m": COOPERATION_PERSISTENT}
    assert out["archetype"].tolist() == [archetypes.classify_row(r) for _, r in at.iterrows()]
    assert archetypes.NO_VALID not in archetypes.LABELS  # a label of no pattern, no rule's
    both = out.assign(model="both")
    row = archetypes.group_labels(both, ["model"], n_boot=100).iloc[0]
    assert (row["agent_trials"], row["classified"]) == (24, 12)
    assert row[f"n_{UNCLASSIFIED}"] == 0 and row[f"n_{archetypes.NO_VALID}"] == 12
    assert row["label"] == COOPERATION_PERSISTENT
    labels = archetypes.group_labels(out, ["model"], n_boot=100).set_index("model")
    idle = labels.loc["idle"]
    assert idle["label"] == idle["modal_pattern"] == archetypes.NO_VALID
    assert np.isnan(idle["confidence"]) and idle[f"n_{UNCLASSIFIED}"] == 0
    assert labels.loc["m", "label"] == COOPERATION_PERSISTENT
    stab = archetypes.stability(out, "model").set_index("model")
    assert stab.loc["idle", "label"] == archetypes.NO_VALID
    assert stab.loc["idle", "note"] == archetypes.NO_VALID
    assert stab.loc["idle", "halves_agree"] is None
    # no label of either half: None, which the report prints "n/a" (pandas 3 made the
    # column's None a NaN, printed as a blank cell)
    assert stab.loc["idle", "half_a"] is None and stab.loc["idle", "half_b"] is None
    assert report._fmt(stab.loc["idle", "half_a"]) == "n/a"


@pytest.mark.parametrize(("trials", "icc"), [(4, 0.0), (6, 0.3), (10, 0.3)])
def test_the_lower_bound_holds_its_level_from_few_trials(trials: int, icc: float) -> None:
    """A planted post-trigger stag rate of 0.7 over a few trials (2-5 agent-rounds each,
    trials Beta around it with intra-trial correlation ``icc``): the one-sided 95% lower
    bound the labels are decided by is at most 0.7 at least 94% of the time. The
    cluster-robust normal bound it replaced held 0.85-0.89 at 4-10 trials, so a label's
    threshold was passed by rates below it more often than 5%."""
    rng = np.random.default_rng(trials)
    held = used = 0
    for _ in range(600):
        if icc > 0:
            rates = rng.beta(0.7 * (1 - icc) / icc, 0.3 * (1 - icc) / icc, trials)
        else:
            rates = np.full(trials, 0.7)
        n = rng.integers(2, 6, trials).astype(float)
        k = rng.binomial(n.astype(int), rates).astype(float)
        r = k.sum() / n.sum()
        if r in (0.0, 1.0) or np.allclose(k / n, r):
            continue
        col = {"post_k": np.array([k.sum()]), "post_n": np.array([n.sum()]),
               "post_t": np.array([float(trials)]), "post_kk": np.array([(k * k).sum()]),
               "post_kn": np.array([(k * n).sum()]), "post_nn": np.array([(n * n).sum()])}  # fmt: skip
        _, lower = archetypes._lower_bound(
            col, "post", float(sps.norm.ppf(0.95)), np.array([False]), 0.05
        )
        used += 1
        held += lower[0] <= 0.7
    assert used > 500 and held / used >= 0.94, held / used


def test_a_label_out_of_reach_of_the_trial_count_says_so() -> None:
    """redteam20: with 8 or fewer trials a noise-free Cooperation-Persistent group (stag
    in every round after every trigger) can never reach the bound (Wilson on 8 trials of
    all stag is below 0.75), and was shown as Unclassified/Inconsistent at confidence 1.0
    with no word why. The label note names the pattern and the trials it would need; a
    group short of the threshold at any count has no such note."""
    for trials in (6, 8):
        row = archetypes.group_labels(_persistent([5] * trials), ["model"], n_boot=50).iloc[0]
        assert row["label"] == UNCLASSIFIED
        assert row["label_note"] == (
            "too few trials for its modal pattern, Cooperation-Persistent: the rule needs 9 "
            f"or more trials like these, even with no noise, to carry it (it has {trials})"
        )
    assert _wilson_lower(1.0, 9) >= 0.75 > _wilson_lower(1.0, 8)
    nine = archetypes.group_labels(_persistent([5] * 9), ["model"], n_boot=50).iloc[0]
    assert nine["label"] == COOPERATION_PERSISTENT and nine["label_note"] == ""
    short = archetypes.group_labels(_persistent([4] * 6 + [3] * 2), ["model"], n_boot=50)
    assert short.iloc[0]["label"] == UNCLASSIFIED and short.iloc[0]["label_note"] == ""


def _by_round(actions: str) -> Any:
    """A planted agent that plays ``actions[r - 1]`` in round r whatever anyone does."""

    def reply(messages: list[ChatMessage], purpose: str | None) -> str:
        found = re.search(r"action for round (\d+)", messages[-1].content)
        assert found, messages[-1].content
        action = "hare" if actions[int(found.group(1)) - 1] == "H" else "stag"
        return json.dumps({"reasoning": "planted", "action": action})

    return reply


SCHEDULE = """
name = "schedule"
seed = 23
repetitions = 40
[game]
n_players = 3
rounds = 5
talk_phases = 0
[agents]
max_reasks = 0
[factors]
models = [{models}]
"""


def test_an_end_game_schedule_is_no_reaction(tmp_path: Path) -> None:
    """rt29 F1: an agent that hunts stag in rounds 1-3 and hare in 4-5 whatever anyone does
    puts its hares after any earlier trigger; the null of its own actions shuffled across
    its rounds read that as a reaction (z 6-7) and labelled it Defection-Prone at
    confidence 1.0. Compared round by round with the model's untriggered agent-rounds it
    shows none, while grim trigger in the same design still does."""
    register_mock("endgame", _by_round("SSSHH"))
    pops = [["mock/endgame", "scripted/random(p=0.8)", "scripted/random(p=0.8)"],
            ["scripted/grim-trigger", "scripted/random(p=0.8)", "scripted/random(p=0.8)"]]  # fmt: skip
    df, _ = agent_rounds(
        run_spec(SCHEDULE.format(models=json.dumps(pops)[1:-1]), tmp_path, llm=True)
    )
    at = archetypes.classify(metrics.agent_trials(df))
    assert set(at.loc[at["model"] == "mock/endgame", "acts"]) == {"SSSHH"}
    labels = archetypes.group_labels(at, ["model"], n_boot=200).set_index("model")
    z_crit = float(sps.norm.ppf(0.95))
    end, grim = labels.loc["mock/endgame"], labels.loc["scripted/grim-trigger"]
    assert end["label"] not in (DEFECTION_PRONE, ADAPTIVE) and end["reaction_z"] < z_crit, end
    assert grim["label"] == DEFECTION_PRONE and grim["reaction_z"] > 3 * z_crit, grim


def test_triggers_all_at_one_round_leave_a_reaction_untested(tmp_path: Path) -> None:
    """rt29 F1's endgame2: every trigger comes in round 3 (a partner hunts hare then, only
    then), so no agent-trial of the model is untriggered in rounds 4-5: a reaction cannot
    be told from the schedule, and the group says so instead of a label."""
    register_mock("endgame", _by_round("SSSHH"))
    register_mock("once", _by_round("SSHSS"))
    pops = [["mock/endgame", "mock/once", "scripted/always-stag"]]
    df, _ = agent_rounds(
        run_spec(SCHEDULE.format(models=json.dumps(pops)[1:-1]), tmp_path, llm=True)
    )
    at = archetypes.classify(metrics.agent_trials(df))
    end = archetypes.group_labels(at, ["model"], n_boot=100).set_index("model").loc["mock/endgame"]
    assert end["modal_pattern"] == DEFECTION_PRONE  # what each agent-trial looks like
    assert end["label"] == UNCLASSIFIED and math.isnan(end["reaction_z"])
    # round 4 of each trial: its round 5 follows its own hare (out of the risk set)
    assert end["reaction_untested"] == 40
    assert "cannot be told from a round trend" in end["label_note"]


@dataclass
class Moody(ScriptedAgent):
    """Never reads the game: stag in round 1, then hare with a probability drawn once per
    trial (``lo`` with probability ``w``, else ``hi``)."""

    lo: float = 0.1
    hi: float = 0.6
    w: float = 0.4
    _p: float = -1.0

    def choose(self, view: AgentView) -> Action:
        if view.round == 1:
            return Action.STAG
        if self._p < 0:
            self._p = self.lo if self.rng.random() < self.w else self.hi
        return Action.HARE if self.rng.random() < self._p else Action.STAG


@dataclass
class Onset(ScriptedAgent):
    """Never reads the game: stag until a round drawn once per trial (2 to 9), hare from it."""

    _at: int = 0

    def choose(self, view: AgentView) -> Action:
        self._at = self._at or self.rng.randint(2, 9)
        return Action.HARE if view.round >= self._at else Action.STAG


def _plant(what: str, *agents: tuple[str, type[ScriptedAgent]]) -> None:
    """Register planted scripted strategies (``scripted/<name>``), once per process."""
    for name, agent in agents:
        if name not in STRATEGIES:
            strategy(name, agent, what)


_plant(
    "a planted agent whose inclination differs by trial",
    ("test-moody", Moody),
    ("test-onset", Onset),
)

PLANT = """
name = "{name}"
seed = {seed}
repetitions = 40
[game]
n_players = 4
rounds = 8
[factors]
models = {models}
"""


def _planted(
    tmp_path: Path,
    name: str,
    seed: int,
    models: list[Any],
    topologies: list[str] | None = None,
    adversaries: list[str] | None = None,
) -> pd.DataFrame:
    """The classified agent-trials of a run of planted strategies: 4 players, 8 rounds, 40
    repetitions of each cell, ``models`` a population or a list of them."""
    text = PLANT.format(name=name, seed=seed, models=json.dumps(models))
    for key, levels in (("topologies", topologies), ("adversaries", adversaries)):
        if levels is not None:
            text += f"{key} = {json.dumps(levels)}\n"
    df, _ = agent_rounds(run_spec(text, tmp_path))
    return archetypes.classify(metrics.agent_trials(df))


#: two populations of a per-trial agent beside a reactor, with and without a Byzantine
MOODS = [
    ["scripted/test-moody", "scripted/forgive-after(k=1)", "scripted/always-stag",
     "scripted/always-stag"],
    ["scripted/test-onset", "scripted/generous-tit-for-tat(g=0.5)", "scripted/always-stag",
     "scripted/always-stag"],
]  # fmt: skip
MOOD_ARMS = ["none", "byzantine(count=1,placement=[3])"]


def test_an_inclination_that_differs_by_trial_is_no_reaction(tmp_path: Path) -> None:
    """rt31 F1: an agent whose hare rate is drawn once per trial, beside a partner that
    answers its hares, left the untriggered rounds early in its hare-prone trials, so the
    later rounds' baseline held its cooperative trials and its own hares after the answer
    read as a reaction: Adaptive/Forgiving at confidence 0.99 (z 5.0 with a Byzantine
    trigger, 7.0 without). Compared only while its own record is all stag, it shows none;
    neither does an agent that turns to hare at a round drawn per trial (z 2.5 before),
    while the partners that do react still show it."""
    at = _planted(tmp_path, "moods", 351, MOODS, adversaries=MOOD_ARMS)
    labels = archetypes.group_labels(at, ["model", "adversary_kind"], n_boot=100)
    z_crit = float(sps.norm.ppf(0.95))
    for name in ("scripted/test-moody", "scripted/test-onset"):
        rows = labels[labels["model"] == name]
        assert len(rows) == 2 and rows["reaction_z"].notna().any(), rows
        for _, row in rows.iterrows():
            assert row["label"] not in (ADAPTIVE, DEFECTION_PRONE), row
            assert not row["reaction_z"] > z_crit, row
    react = labels[labels["model"].isin(["scripted/forgive-after(k=1)",
                                         "scripted/generous-tit-for-tat(g=0.5)"])]  # fmt: skip
    assert (react["reaction_z"] > 3 * z_crit).all(), react


def test_rounds_after_an_own_hare_are_left_out_and_said() -> None:
    """Seat 0 hunts hare in round 1 unannounced; seat 1 promises stag in round 2 and hunts
    hare (the betrayal, the agent's trigger); the agent answers round 1's hare in round 2
    and keeps to hare. Every post-trigger round follows its own hare: none is in the risk
    set, the count says so, and the Defection-Prone modal pattern is unlabelled with why
    (before, those rounds were the reaction test's evidence)."""
    seats, rounds = [0, 1, 2], [1, 2, 3, 4, 5]
    plays = {0: "HSSSS", 1: "SHSSS", 2: "SHHHH"}
    act = [[{"S": "stag", "H": "hare"}[plays[k][i]] for k in seats] for i in range(5)]
    heard = [[set(), set(), {1} if r == 2 else set()] for r in rounds]
    talk = [[(None, None)] * 3 for _ in rounds]
    pay = [[0.0] * 3 for _ in rounds]
    at = pd.DataFrame(
        [
            {
                **metrics.agent_row(f"t{t:02d}", 2, seats, rounds, act, pay, heard, talk, 3.0),
                "model": "m",
                "repetition": t,
            }
            for t in range(12)
        ]  # fmt: skip
    )
    assert (at["trigger_kind"] == "betrayal").all() and (at["trigger_round"] == 2).all()
    out = archetypes.classify(at)
    assert (out["archetype"] == DEFECTION_PRONE).all()
    row = archetypes.group_labels(out, ["model"], n_boot=100).iloc[0]
    assert row["modal_pattern"] == DEFECTION_PRONE and row["label"] == UNCLASSIFIED
    assert (row["reaction_after_own"], row["reaction_untested"]) == (3 * 12, 0)
    assert math.isnan(row["reaction_z"])
    assert "follows a hare of its own" in row["label_note"]


# -- causes shared with the trigger (redteam rt32) -----------------------------------------
@dataclass
class Sparse(ScriptedAgent):
    """Never reads an action: from round ``start``, hare with probability ``hi`` when told
    its network is sparse (fewer neighbours than the others), else 0.02; stag after each
    hare."""

    start: int = 3
    hi: float = 0.4

    def choose(self, view: AgentView) -> Action:
        mine = [past.actions[view.seat] for past in view.history]
        if view.round < self.start or (mine and mine[-1] is Action.HARE):
            return Action.STAG
        sparse = view.topology is not None and (
            len(view.topology.can_reach) < view.config.n_players - 1
        )
        return Action.HARE if self.rng.random() < (self.hi if sparse else 0.02) else Action.STAG


@dataclass
class Herd(ScriptedAgent):
    """Never reads an action: a mood shared by the trial's herd seats, the word the lowest
    of them says in round 1 ("tense" with probability 1/2), sets its hare chance from round
    2 (``hi`` if tense, else 0.02); stag after each hare."""

    hi: float = 0.5
    _mood: str = ""

    def _own(self) -> str:
        self._mood = self._mood or ("tense" if self.rng.random() < 0.5 else "calm")
        return self._mood

    async def speak(self, view: AgentView) -> Utterance:
        if view.round == 1:
            return Utterance(text=f"mood {self._own()}. I will hunt stag this round.")
        return await super().speak(view)

    def choose(self, view: AgentView) -> Action:
        mine = [past.actions[view.seat] for past in view.history]
        if view.round < 2 or (mine and mine[-1] is Action.HARE):
            return Action.STAG
        said = [
            (m.sender, m.text or "") for m in view.history[0].received if "mood " in (m.text or "")
        ]
        mood = min([*said, (view.seat, f"mood {self._own()}")])[1]
        p = self.hi if "tense" in mood else 0.02
        return Action.HARE if self.rng.random() < p else Action.STAG


@dataclass
class Announcer(ScriptedAgent):
    """Never reads an action: says ``say`` (by default "I will hunt hare next round.") with
    probability 0.15 while its record is all stag, hunts hare in that next round, then
    stag."""

    say: str = "I will hunt hare next round."
    _due: int = 0

    async def speak(self, view: AgentView) -> Utterance:
        if not self._due and self.rng.random() < 0.15:
            self._due = view.round + 1
            return Utterance(text=self.say)
        return Utterance(text="I will hunt stag this round.")

    def choose(self, view: AgentView) -> Action:
        return Action.HARE if view.round == self._due else Action.STAG


@dataclass
class Listener(ScriptedAgent):
    """Promises stag; hunts hare in a round whose talk it received speaks of the next one."""

    talk: str = "none"

    async def speak(self, view: AgentView) -> Utterance:
        return Utterance(text="I will hunt stag this round.")

    def choose(self, view: AgentView) -> Action:
        heard = " ".join(m.text or "" for m in view.inbox)
        return Action.HARE if "next" in heard else Action.STAG


_plant(
    "a planted agent that never reads an action",
    ("test-sparse", Sparse),
    ("test-herd", Herd),
    ("test-announcer", Announcer),
    ("test-listener", Listener),
)


def _labels(
    tmp_path: Path, models: list[str], by: list[str], topologies: tuple[str, ...] = ("complete",)
) -> Any:
    at = _planted(tmp_path, "shared", 7, [models], topologies=list(topologies))
    return archetypes.group_labels(at, by, n_boot=100)


def test_a_cell_that_changes_the_agent_is_no_reaction(tmp_path: Path) -> None:
    """rt32 F1: an agent that hunts hare more on a ring than on a complete graph, never
    reading an action, was Adaptive/Forgiving on the ring at confidence 1.0 (z 11-17 in
    every seed): its untriggered rounds were pooled over both topologies, and on the ring,
    where every seat is hare-prone, triggers came early. Compared within its cell, none."""
    models = 2 * ["scripted/test-sparse"] + 2 * ["scripted/test-sparse(start=2,hi=0.5)"]
    labels = _labels(tmp_path, models, ["model", "topology"], ("complete", "ring"))
    ring = labels.set_index(["model", "topology"]).loc[("scripted/test-sparse", "ring")]
    assert ring["modal_pattern"] == ADAPTIVE  # what its agent-trials look like
    assert ring["label"] == UNCLASSIFIED and not ring["reaction_z"] > 1.645, ring
    assert ring["reaction_pooled"] == 0  # no adversary arm to pool over


def test_a_mood_shared_by_seats_is_told_apart_by_the_same_round_check(tmp_path: Path) -> None:
    """rt32 F2: seats that share a mood through talk (never reading an action) hunt hare
    in the same trials; the least hare-prone seat is mostly triggered by the others first,
    then hunts hare as its mood has it, which reads as a reaction (Adaptive/Forgiving
    before, at confidence 0.97 here). In the very round the others first hunt hare (unseen
    yet) it hunts hare beyond its baseline too: the same-round check says so, and no
    reaction label is given."""
    models = ["scripted/test-herd(hi=0.4)"] + 3 * ["scripted/test-herd(hi=0.9)"]
    low = _labels(tmp_path, models, ["model"]).set_index("model").loc["scripted/test-herd(hi=0.4)"]
    assert low["modal_pattern"] == ADAPTIVE and low["reaction_z"] > 1.645, low
    assert low["same_round_z"] > 1.645 and low["label"] == UNCLASSIFIED, low
    assert "same_round_z" in low["label_note"], low["label_note"]


@pytest.mark.parametrize(
    "say",
    [
        "I will hunt hare next round.",
        # rt34: read as no announcement by the vocabulary, and each brought the false label back
        "My next move is hare.",
        "I'm not going to cooperate next round.",
        "I'll hunt hare next round unless you convince me otherwise.",
    ],
)
def test_an_announced_hare_leaves_the_risk_set(tmp_path: Path, say: str) -> None:
    """rt32 F3: an agent that says "I will hunt hare next round" draws its listeners' hare
    a round before its own, while its record is all stag: Adaptive/Forgiving in every seed
    (z 26-30). Its rounds after the announcement are out of the risk set, counted."""
    announcer = f"scripted/test-announcer(say={say!r})"
    models = [announcer, "scripted/test-listener", "scripted/test-listener", "scripted/always-stag"]  # fmt: skip
    at = _planted(tmp_path, "shared", 3, [models], topologies=["complete"])
    talker = at[at["model"] == announcer]
    assert talker["talk_no_stag"].str.contains("1").sum() > 10
    labels = archetypes.group_labels(at, ["model"], n_boot=100)
    row = labels.set_index("model").loc[announcer]
    assert row["label"] not in (ADAPTIVE, DEFECTION_PRONE), row
    assert not row["reaction_z"] > 1.645 and row["reaction_after_own"] > 0, row


@dataclass
class Gullible(ScriptedAgent):
    """Never reads an action: from round 2, hare with probability 0.3 once any message it
    received has named hare (an injected order), else 0.03; stag after each hare."""

    def choose(self, view: AgentView) -> Action:
        mine = [past.actions[view.seat] for past in view.history]
        if view.round < 2 or (mine and mine[-1] is Action.HARE):
            return Action.STAG
        heard = [m.text or "" for past in view.history for m in past.received]
        ordered = any("hare" in text.lower() for text in heard)
        return Action.HARE if self.rng.random() < (0.3 if ordered else 0.03) else Action.STAG


@dataclass
class TalkingGrim(ScriptedAgent):
    """Grim trigger that talks: a promise with a conditional threat while no other player
    has hunted hare; once one has, "You hunted hare, so I will hunt hare next round.", and
    hare from the round after that on (``lag`` 1) or at once (``lag`` 0)."""

    lag: int = 0

    def _seen(self, view: AgentView) -> int | None:
        return next((past.round for past in view.history if view.others_played_hare(past)), None)

    async def speak(self, view: AgentView) -> Utterance:
        if self._seen(view) is None:
            return Utterance(
                text="I will hunt stag; if anyone hunts hare, I will hunt hare next round."
            )
        return Utterance(text="You hunted hare, so I will hunt hare next round.")

    def choose(self, view: AgentView) -> Action:
        seen = self._seen(view)
        return Action.HARE if seen is not None and view.round > seen + self.lag else Action.STAG


_plant("a planted agent (talk)", ("test-gullible", Gullible), ("test-talking-grim", TalkingGrim))


def _arm_labels(tmp_path: Path, models: list[str], arms: list[str]) -> pd.DataFrame:
    at = _planted(tmp_path, "arms", 5, [models], adversaries=arms)
    return archetypes.group_labels(at, ["model", "adversary_kind"], n_boot=100)


def test_an_injection_arm_is_not_compared_with_other_arms(tmp_path: Path) -> None:
    """rt33 H1: an agent that obeys an injected order from round 2, never reading an
    action, was Adaptive/Forgiving at confidence 0.995 (z 10.6) in the injector arm: every
    trial there is triggered in round 1, and the baseline came from the no-adversary arm,
    which the payload is meant to differ from. An injection arm's rounds are compared
    within it only: here none are left to compare, and it says so."""
    labels = _arm_labels(
        tmp_path,
        ["scripted/test-gullible", "scripted/always-stag", "scripted/always-stag"],
        ["none", "injector(count=1,placement=[3])"],
    ).set_index(["model", "adversary_kind"])
    row = labels.loc[("scripted/test-gullible", "injector")]
    assert row["label"] not in (ADAPTIVE, DEFECTION_PRONE), row
    assert not row["reaction_z"] > 1.645 and row["reaction_pooled"] == 0, row
    assert row["reaction_untested"] > 0 and row["modal_pattern"] == ADAPTIVE, row
    assert "compared within itself only" in row["label_note"], row["label_note"]


@pytest.mark.parametrize("lag", [0, 1])
def test_talk_of_a_reactor_keeps_its_evidence(tmp_path: Path, lag: int) -> None:
    """rt33 M1, M2: a grim trigger whose promise carries a threat ("if anyone hunts hare, I
    will hunt hare next round") lost all its evidence to the announced-hare rule (0 of 30
    labels); one that announces its answer a round ahead, after the trigger, was never
    tested (z -1.3). A condition announces nothing, and talk after the trigger cannot have
    drawn it: lag 0 keeps its Defection-Prone label, lag 1 its reaction."""
    labels = _arm_labels(
        tmp_path,
        ["scripted/test-talking-grim" + (f"(lag={lag})" if lag else ""),
         "scripted/random(p=0.85)", "scripted/always-stag", "scripted/always-stag"],
        ["none", "soft(count=1,placement=[3],p=0.5)"],
    )  # fmt: skip
    grim = labels[labels["model"].str.startswith("scripted/test-talking-grim")]
    assert (grim["reaction_z"] > 3 * 1.645).all(), grim
    # the soft arm's baseline holds the no-adversary arm's untriggered rounds too (its own
    # are few: rt33 M3, its reactors' z fell 3-4 times when compared with them alone)
    soft = grim.set_index("adversary_kind").loc["soft"]
    assert soft["reaction_pooled"] > 0 and soft["reaction_untested"] == 0, soft
    if not lag:
        assert (grim["label"] == DEFECTION_PRONE).all(), grim


def test_a_stag_signal_arm_with_words_of_its_own_is_not_pooled(tmp_path: Path) -> None:
    """rt34 H2: a byzantine arm whose ``signal`` the spec writes ("Everyone choose hare now")
    talks like an injector; pooled with the no-adversary arm, an agent obeying talk was
    Adaptive/Forgiving in every seed. Such an arm is compared within itself only."""
    at_arm = 'byzantine(count=1,placement=[3],signal="Everyone choose hare now")'
    models = ["scripted/test-gullible", "scripted/always-stag", "scripted/always-stag"]
    at = _planted(tmp_path, "arms", 5, [models], adversaries=["none", at_arm])
    assert at["adversary_arm"].str.contains("signal=").any()  # (agent_trials carries the arm)
    labels = archetypes.group_labels(at, ["model", "adversary_kind"], n_boot=100)
    row = labels.set_index(["model", "adversary_kind"]).loc[("scripted/test-gullible", "byzantine")]
    assert row["label"] not in (ADAPTIVE, DEFECTION_PRONE), row
    assert row["reaction_pooled"] == 0 and not row["reaction_z"] > 1.645, row


@dataclass
class ChattyGrim(ScriptedAgent):
    """Grim trigger that says "I'll keep cooperating." every round."""

    async def speak(self, view: AgentView) -> Utterance:
        return Utterance(text="I'll keep cooperating.")

    def choose(self, view: AgentView) -> Action:
        betrayed = any(view.others_played_hare(past) for past in view.history)
        return Action.HARE if betrayed else Action.STAG


_plant("a planted reactor that chats", ("test-chatty-grim", ChattyGrim))


def test_a_reactor_that_chats_cooperatively_keeps_its_label(tmp_path: Path) -> None:
    """rt35 H1: talk naming the game's choices without a stag signal left the risk set,
    and "I'll keep cooperating." is no stag signal: a grim trigger saying it every round
    was Unclassified in every seed (Defection-Prone when silent). Wanting the joint hunt
    leaves the agent in."""
    labels = _arm_labels(
        tmp_path,
        ["scripted/test-chatty-grim", "scripted/random(p=0.85)", "scripted/always-stag",
         "scripted/always-stag"],
        ["none", "soft(count=1,placement=[3],p=0.5)"],
    )  # fmt: skip
    grim = labels[labels["model"] == "scripted/test-chatty-grim"]
    assert (grim["label"] == DEFECTION_PRONE).all() and (grim["reaction_z"] > 3 * 1.645).all()


def test_strata_codes_are_those_of_a_multiindex() -> None:
    """``_codes`` (a column at a time) numbers rows as ``MultiIndex.factorize`` does: the
    same groups, in order of first appearance, a missing value a group of its own."""
    rng = np.random.default_rng(0)
    for _ in range(100):
        n, k = int(rng.integers(1, 200)), int(rng.integers(1, 5))
        values = np.array(["a", "b", "c|d", None], dtype=object)
        keys = [pd.Series(rng.choice(values, n)).astype(str) for _ in range(k)]
        want = np.asarray(pd.MultiIndex.from_arrays(keys).factorize()[0], dtype=np.int64)
        assert np.array_equal(archetypes._codes(keys), want)
