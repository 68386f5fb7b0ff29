"""Archetypes of how an agent reacts to betrayal, calibrated against noise.

Per agent-trial (from ``metrics.agent_trials``), a descriptive pattern, in this order:
0. No valid action (``NO_VALID``): the agent never made a valid action (every reply failed
   to parse): no behaviour to read, so no pattern. It is not Unclassified (which is mixed
   evidence, or no trigger); it counts in no pattern's share, and a group of only such
   agent-trials has no label (``NO_VALID``, no confidence).
1. Pre-emptive defector: hunted hare before seeing any other player hunt hare.
2. Unclassified: no trigger seen, or fewer than ``min_rounds_after`` valid actions after it.
3. Cooperation-Persistent: stag in the round after the trigger and in at least
   ``persist_min_stag`` of the rounds after it.
4. Adaptive/Forgiving: hunted hare after the trigger, then returned to stag.
5. Defection-Prone: hunted hare after the trigger and never stag again, although it had
   a chance to forgive (a later round in which no other player hunted hare). Without such
   a chance (everyone kept defecting: an all-tit-for-tat group) forgiveness is untested,
   and the agent-trial is Unclassified.
6. Unclassified otherwise (mixed evidence).

A pattern is not a label: a strategy that is noise (``random(p=0.5)``) shows every
pattern. Per model and condition (a group of agent-trials) the label is the modal pattern
only if the group's behaviour bears it out against noise:

- Defection-Prone and Adaptive/Forgiving claim a reaction to the trigger: the group must
  hunt hare after its triggers more often than the same model does at the same round in
  the same design cell when not (yet) triggered. Each post-trigger agent-round is compared
  with the hare rate of the model's untriggered agent-rounds of its round and cell (up to
  the first round another player hunted hare, or in trials where none did; smoothed,
  (hares + 1/2) / (n + 1), its estimation variance counted), pooled over the cell's
  no-adversary arm and its arms whose adversary says nothing but the default stag signal
  (byzantine, soft, delayed, no ``signal=`` of the spec's own words: assumed alike before
  a trigger; a Byzantine arm has no untriggered round
  after round 1, and a soft arm's alone are few: its reactors' z fell 3-4 times, rt33).
  ``reaction_pooled`` counts the tested rounds whose baseline holds other arms' rounds.
  An injector's payload or a deceiver's talk is there to change untriggered behaviour, so
  those arms are compared within their own cell only (rt33: an agent obeying the
  injected order from round 2 was Adaptive/Forgiving at 0.995 against the no-adversary
  arm). One-sided test at ``alpha`` on the
  summed count (normal approximation with continuity correction): a strategy that
  switches when betrayed hunts hare where its untriggered self hunts stag; noise does
  not, and neither does an agent that merely defects late in the game (an end-game
  schedule puts its hares after any earlier trigger: the null of its own actions shuffled
  across its rounds, used before, read that as a reaction at z 6-7). A post-trigger round
  with no untriggered round to compare (every trial triggered by then) cannot tell a
  reaction from a round trend: it is left out of the test and counted
  (``reaction_untested``); a group with none left has no reaction evidence.

  The comparison is observational: anything that makes both the agent and the others
  hunt hare reads as a reaction. Three such causes are taken out:
  * its own hare: both sides hold only agent-rounds in its risk set, whose own actions so
    far hold no hare, so the test compares the chance of a first hare after a trigger with
    that of a first hare untriggered. An agent whose inclination differs by trial and
    whose own hare draws the others' answer left the untriggered rounds early in its
    hare-prone trials, and its own hares after the answer read as a reaction (rt31: a
    per-trial rate, Adaptive/Forgiving at confidence 0.99, z 5-10; now z about 0). Only the
    first answer is measured, at the cost of power for reactors that slip now and then;
  * its talk: a first hare within three rounds of its own talk that promised no stag,
    said before its trigger, is out of the risk set too (``agent_trials.talk_no_stag``,
    ``Detector.promises_no_stag``: a message that announces a hare, "I will hunt hare
    next round", ``Lexicon.hare_intent``; refuses the joint hunt, "I'm not going to
    cooperate next round"; or names hare, defect or the safe choice without a stag signal
    or a wish for the joint hunt; small talk, stag promises, "I'll keep cooperating", and
    a promise with a threat in it, "I will hunt stag; if anyone hunts hare, I will too",
    leave the agent in: rt35 found cooperative chatter had cost talkative reactors their
    labels). rt32: an announcer drew its listeners' hare a round ahead,
    Adaptive/Forgiving in every seed, z 26-30; rt34: the announcement vocabulary alone read
    24 of 42 new announcements, and each one missed brought the label back; this reading
    flags all of the red teams' 96 announcements and 10 of their 82 cooperative messages
    (in-sample: tuned on those lists); a wording it does not know still brings a false
    label back (rt35: four of 20 new ones did before they were added). Said after
    the trigger, talk cannot have drawn it: an answer announced a round ahead still
    counts. Rounds left out by either are counted (``reaction_after_own``);
  * the cell: a topology, disclosure or population that makes the model hunt hare more
    also brings triggers earlier; pooled over cells, that read as a reaction (rt32: on a
    ring, Adaptive/Forgiving at confidence 1.0, z 11-17), so the baseline is the cell's.

  A cause shared by the seats of a trial (a mood their talk sets, the same model in the
  same conversation) remains. The same-round check looks for it: in the round another
  player first hunted hare the agent acted without having seen it, so its hares there
  cannot answer it; where they exceed its untriggered baseline as well (``same_round_z``
  past the same level) no reaction label is given, and the note says why (rt32: seats
  sharing a mood through talk, Adaptive/Forgiving at 0.97, now unlabelled). The check
  cannot see a shared cause that shows only after the trigger's round (rt33: rt32's
  ``herd_mq``, mood from round 3, triggers in round 2, still Adaptive/Forgiving in 9 of
  25 seeds), nor a stag-signal arm that changes untriggered behaviour after round 1.
  Where none of these acts, the test is conservative (non-reactive agents' z about -0.6
  at 8 rounds, -1.5 at 20: the smoothing and the continuity correction).
- Cooperation-Persistent claims steadiness: the group's stag rate after its triggers must
  reach ``persist_min_stag`` with 1 - ``alpha`` confidence (one-sided lower bound, trials
  as clusters: the lower end of ``stats.cluster_rate_ci``'s interval at 2 ``alpha``, Wilson
  over the design-effect n with a t quantile), so noise that mostly cooperates
  (``random(p=0.7)``, or ``random(p=0.8)`` over 10 trials) is not steady. When
  the trials show no spread (every one at the pooled rate, ``stats.shared_rate``: all one
  way, or all at one rate in between, as a deterministic agent gives) the cluster-robust
  bound would be the rate itself: the bound is then Wilson's with one observation per
  trial, as ``stats.cluster_rate_ci`` does, so 8 trials at 0.75 are not 0.75 for sure.
- Pre-emptive defector claims unprovoked defection: the group's hare rate before any
  other player hunted hare (its ``pre_`` rounds: up to the first round another player
  hunted hare, or every round where none did; a trigger that is a later betrayal would
  count hares that answered an earlier defection) must reach ``pre_emptive_min_hare`` the
  same way.

Otherwise the label is "Unclassified/Inconsistent". Too few classified agent-trials
(``min_agent_trials``) are "Unclassified/Inconsistent" too. The confidence is the share of
bootstrap resamples of trials in which the whole rule gives the same label (Unclassified
included), so a label that rests on a handful of trials says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from stagbench.analysis.stats import (
    CELL_FACTORS,
    boot_weights,
    design_effect_bounds,
    shared_rate,
    wilson_rate,
)

PRE_EMPTIVE = "Pre-emptive defector"
DEFECTION_PRONE = "Defection-Prone"
COOPERATION_PERSISTENT = "Cooperation-Persistent"
ADAPTIVE = "Adaptive/Forgiving"
UNCLASSIFIED = "Unclassified/Inconsistent"
#: the "pattern" of an agent-trial with no valid action, and the "label" of a group of only
#: such agent-trials: no behaviour to read (neither a pattern nor a label of the rule)
NO_VALID = "no valid action"
#: behavioural labels, in the order of the integer codes used below
PATTERNS = (PRE_EMPTIVE, DEFECTION_PRONE, COOPERATION_PERSISTENT, ADAPTIVE)
LABELS = (*PATTERNS, UNCLASSIFIED)


@dataclass(frozen=True)
class Rule:
    min_rounds_after: int = 2
    persist_min_stag: float = 0.75
    pre_emptive_min_hare: float = 0.75
    alpha: float = 0.05
    min_agent_trials: int = 5


RULE = Rule()


def classify_row(row: pd.Series, rule: Rule = RULE) -> str:
    """The pattern of one agent-trial (see the module docstring)."""
    if row["n_valid"] == 0:
        return NO_VALID
    if row["pre_emptive"]:
        return PRE_EMPTIVE
    if pd.isna(row["trigger_round"]) or row["rounds_after"] < rule.min_rounds_after:
        return UNCLASSIFIED
    if not row["switched"] and row["stag_rate_after"] >= rule.persist_min_stag:
        return COOPERATION_PERSISTENT
    if row["returned"]:
        return ADAPTIVE
    if row["switched"] and row["adaptation"] == "permanent" and row["forgive_chance"]:
        return DEFECTION_PRONE
    return UNCLASSIFIED


def has_evidence(row: pd.Series, rule: Rule = RULE) -> bool:
    """Whether an agent-trial can be classified at all (a trigger and enough rounds after)."""
    return bool(row["pre_emptive"]) or (
        not pd.isna(row["trigger_round"]) and row["rounds_after"] >= rule.min_rounds_after
    )


def classify(agent_trials: pd.DataFrame, rule: Rule = RULE) -> pd.DataFrame:
    """``agent_trials`` with an ``archetype`` column (the pattern): ``classify_row`` over
    whole columns."""
    out = agent_trials.copy()
    if out.empty:
        out["archetype"] = []
        return out
    idle = (out["n_valid"] == 0).to_numpy()
    pre = out["pre_emptive"].astype(bool).to_numpy()
    short = (out["trigger_round"].isna() | (out["rounds_after"] < rule.min_rounds_after)).to_numpy()
    switched = out["switched"].astype(bool).to_numpy()
    cp = ~switched & (out["stag_rate_after"] >= rule.persist_min_stag).fillna(False).to_numpy()
    adaptive = out["returned"].astype(bool).to_numpy()
    dp = (
        switched
        & (out["adaptation"] == "permanent").to_numpy()
        & out["forgive_chance"].astype(bool).to_numpy()
    )
    out["archetype"] = np.select(
        [idle, pre, short, cp, adaptive, dp],
        [NO_VALID, PRE_EMPTIVE, UNCLASSIFIED, COOPERATION_PERSISTENT, ADAPTIVE, DEFECTION_PRONE],
        default=UNCLASSIFIED,
    )
    return out


# -- the calibrated label of a group ---------------------------------------------------------
#: per-trial sums the rule reads: pattern counts, the reaction evidence, and for the pre-
#: and post-trigger rates the sums a cluster-robust variance needs (k, n, k^2, k n, n^2, 1)
_LEVELS = ("pre", "post")
_FEATURES = (
    *(f"n_{i}" for i in range(len(PATTERNS))),
    "responses",
    "response_hare",
    "null_mean",
    "null_var",
    "untested",
    "untested_alone",
    "after_own",
    "pooled",
    "same_hare",
    "same_mean",
    "same_var",
    *(f"{lv}_{part}" for lv in _LEVELS for part in ("k", "n", "kk", "kn", "nn", "t")),
)


#: the columns of an agent-trial that make its design cell (``stats.CELL_FACTORS`` and the
#: adversary arm's parts, those present): its post-trigger rounds are compared with the
#: untriggered agent-rounds of the same model in the same cell, round by round
_CELL = (*CELL_FACTORS, "adversary_kind", "adversary_count", "adversary_placement")
#: ... of which these make its adversary arm: the baseline pools a cell's arms of
#: ``_POOLED_KINDS`` (a Byzantine arm has no untriggered round after round 1)
_ARM = ("adversary_arm", "adversary_kind", "adversary_count", "adversary_placement", "payload")
#: the adversary kinds whose arms are pooled so: they say nothing but a stag signal, so an
#: honest agent's untriggered behaviour is taken to be that of the no-adversary arm.
#: An injector's payload or an LLM deceiver's talk is there to change it (rt33: an agent
#: obeying the injected order from round 2 was Adaptive/Forgiving at 0.995): their rounds
#: are compared within their own cell only
_POOLED_KINDS = ("none", "byzantine", "soft", "delayed")
#: a first hare this many rounds or fewer after the agent's own talk that promised no stag,
#: said before its trigger, is left out (rt34: "in three rounds" escaped a window of two)
_TALK_WINDOW = 3


def _codes(keys: Sequence[pd.Series]) -> np.ndarray:
    """Each row's code for its values of ``keys`` (a missing value is a value too),
    numbered as the combinations first appear: ``MultiIndex.factorize``'s codes, a column
    at a time (no tuple per row: a quarter of its time at 300,000 agent-trials)."""
    code: np.ndarray = np.zeros(len(keys[0]) if keys else 0, np.int64)
    for key in keys:
        c, levels = pd.factorize(key, use_na_sentinel=False)
        code = pd.factorize(code * len(levels) + c.astype(np.int64))[0].astype(np.int64)
    return code


def _strata(at: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """Each agent-trial's code for its model and the ``columns`` of ``at`` it has."""
    keys = [at[c].astype(str) for c in ("model", *columns) if c in at.columns]
    if not keys:
        return np.zeros(len(at), np.int64)
    return _codes(keys)


def _reaction(at: pd.DataFrame, by: list[str]) -> dict[str, np.ndarray]:
    """Per agent-trial, the reaction test's sums over its post-trigger agent-rounds in the
    risk set (no hare of its own before, played or announced) that have a baseline (see
    the module docstring): hares, their null mean and variance, how many it has, how many
    of them are compared with other adversary arms' rounds (``pooled``), how many have no
    baseline (``untested``), how many post-trigger rounds follow a hare of its own
    (``own``), and the same-round check's hares, null mean and variance (``same_*``)."""
    rows = len(at)
    out: dict[str, np.ndarray[Any, Any]] = {
        k: np.zeros(rows)
        for k in (
            *("tested", "hare", "mean", "var", "untested", "alone", "own", "pooled"),
            *("same_hare", "same_mean", "same_var"),
        )
    }
    acts = at["acts"].astype(str).tolist() if "acts" in at.columns else None
    if not rows or acts is None:
        return out
    lengths = np.fromiter(map(len, acts), dtype=np.int64, count=rows)
    code = np.frombuffer("".join(acts).encode("ascii", "replace"), dtype=np.uint8)
    row = np.repeat(np.arange(rows), lengths)
    starts = np.cumsum(lengths) - lengths
    rnd = np.arange(code.size) - np.repeat(starts, lengths) + 1  # rounds from 1
    trigger = at["trigger_round"].to_numpy(dtype=float)[row]
    seen = at["defection_round"].to_numpy(dtype=float)[row]
    valid = code != ord("-")
    hare = code == ord("H")
    # the risk set: agent-rounds whose own actions so far hold no hare. An agent whose
    # inclination differs by trial (an LLM's mood, a prompt's wording) and whose own hare
    # draws the others' hare leaves the untriggered rounds early in its hare-prone trials:
    # compared over its whole history, its later untriggered rounds are its cooperative
    # trials, and its own hares after its partners' answer read as a reaction. Compared only
    # while its own record is all stag, triggered and untriggered rounds hold the same mix
    # of inclinations (what the others did cannot depend on an inclination the agent never
    # showed): the test compares the hazard of a first hare
    hares = np.cumsum(hare)
    clean = hares - hare == (hares - hare)[starts][row]
    # ... nor a first hare within three rounds of its own talk that promised no stag (a
    # hare announced, "I will hunt hare next round", or the game's choices named without a
    # stag signal) said no later than the first round another player hunted hare: such
    # talk can draw the others' hare before its own. (Said after that, it cannot have
    # drawn it: an answer announced a round ahead still counts.)
    if "talk_no_stag" in at.columns:
        text = "".join(at["talk_no_stag"].astype(str).tolist()).encode("ascii", "replace")
        if len(text) == code.size:  # (one letter per round, as acts has)
            said = (np.frombuffer(text, dtype=np.uint8) == ord("1")) & ~(rnd > seen)
            drawn = np.zeros_like(said)
            for lag in range(1, _TALK_WINDOW + 1):  # said 1, 2 or 3 rounds before
                drawn[lag:] |= said[:-lag] & (rnd[lag:] > lag)
            clean &= ~drawn
    after = valid & (rnd > trigger)  # (NaN: never triggered, never after)
    post = after & clean
    # untriggered: no other player has hunted hare yet (a trigger that is a betrayal may
    # come after an earlier defection, which the agent may have answered already)
    before = valid & clean & ~(rnd > seen)
    width = int(lengths.max(initial=0)) + 1
    # the baseline of a round: the model's untriggered agent-rounds of that round in the
    # same cell, pooled over the cell's arms whose adversary says only a stag signal (and
    # the no-adversary arm); an arm of another kind keeps to its own cell
    cell = _strata(at, _CELL)[row] * width + rnd
    free = [c for c in _CELL if c not in _ARM]
    alone = np.zeros(rows, dtype=bool)  # an arm compared within itself only
    if "adversary_kind" in at.columns:
        kind = at["adversary_kind"].astype(str)
        pooled = kind.isin(_POOLED_KINDS)
        if "payload" in at.columns:  # (a spec's payloads factor)
            pooled &= at["payload"].fillna("").astype(str).isin(["", "nan", "None"])
        if "adversary_arm" in at.columns:  # a signal of the spec's own words is talk too
            pooled &= ~at["adversary_arm"].astype(str).str.contains("signal=", regex=False)
        # each arm's code (-1: pooled); a factorisation of the arm's columns, not a
        # row-wise join of their texts (60 s at 300,000 agent-trials under pandas 3)
        arm = _codes([at[c].astype(str) for c in _ARM if c in at.columns])
        at = at.assign(_arm=np.where(pooled.to_numpy(), -1, arm))
        free.append("_arm")
        alone = ~pooled.to_numpy()
    stratum = _strata(at, free)[row] * width + rnd
    group = at.groupby(by, sort=False, observed=True).ngroup().to_numpy()[row].astype(np.int64)
    tested, q, var, n_base = _against(post, before, hare, stratum, group)
    where = row[tested]
    out["tested"] = np.bincount(where, minlength=rows).astype(float)
    out["hare"] = np.bincount(where, weights=hare[tested], minlength=rows)
    out["mean"] = np.bincount(where, weights=q, minlength=rows)
    out["var"] = np.bincount(where, weights=var, minlength=rows)
    out["untested"] = np.bincount(row[post & ~tested], minlength=rows).astype(float)
    out["alone"] = np.bincount(row[post & ~tested & alone[row]], minlength=rows).astype(float)
    out["own"] = np.bincount(row[after & ~clean], minlength=rows).astype(float)
    # tested rounds whose baseline holds other arms' rounds too
    own_n = np.bincount(cell[before], minlength=int(cell.max(initial=0)) + 1)[cell[tested]]
    out["pooled"] = np.bincount(where[own_n < n_base], minlength=rows).astype(float)
    # the same-round check: in the round another player first hunted hare the agent acted
    # without having seen it, so its hares there cannot answer it; beyond its untriggered
    # hazard they tell of a cause shared with the others' hare (the cell, an arm, a mood
    # common to the trial's seats, talk), which a reaction test cannot tell from a reaction
    same = before & (rnd == seen)
    tested, q, var, _ = _against(same, before & ~same, hare, stratum, group)
    where = row[tested]
    out["same_hare"] = np.bincount(where, weights=hare[tested], minlength=rows)
    out["same_mean"] = np.bincount(where, weights=q, minlength=rows)
    out["same_var"] = np.bincount(where, weights=var, minlength=rows)
    return out


def _against(
    target: np.ndarray, base: np.ndarray, hare: np.ndarray, stratum: np.ndarray, group: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The ``target`` agent-rounds (a mask over agent-rounds) compared with the ``base``
    ones of their ``stratum`` (model, cell, round). Returns which target rounds have a
    baseline, and for those its smoothed hare rate, (hares + 1/2) / (n + 1), the variance
    of a target round's hare about it (its own, and the estimate's: n_T^2 q (1 - q) / n_U
    over the ``group``'s n_T target rounds of that stratum) and n_U."""
    size = int(stratum.max(initial=0)) + 1
    u_n = np.bincount(stratum[base], minlength=size).astype(float)
    u_h = np.bincount(stratum[base & hare], minlength=size).astype(float)
    pair = group * size + stratum
    tested = target & (u_n[stratum] > 0)
    _, inverse = np.unique(pair[tested], return_inverse=True)
    n_t = np.bincount(inverse).astype(float)[inverse] if inverse.size else np.zeros(0)
    s = stratum[tested]
    q = (u_h[s] + 0.5) / (u_n[s] + 1.0)
    var = q * (1.0 - q) * (1.0 + n_t / u_n[s])
    return tested, q, var, u_n[s]


def _trial_features(at: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per group (``by``) and trial: the sums in ``_FEATURES``, in one pass over the
    agent-trials (indexed by the ``by`` columns and trial_id)."""
    code = at["archetype"].map({lab: i for i, lab in enumerate(PATTERNS)})
    react = _reaction(at, by)
    cols: dict[str, Any] = {
        **{c: at[c].astype(str).to_numpy() for c in by},
        "trial_id": at["trial_id"].astype(str).to_numpy(),
        **{f"n_{i}": (code == i).to_numpy(dtype=float) for i in range(len(PATTERNS))},
        "responses": (react["tested"] > 0).astype(float),
        "response_hare": react["hare"],
        "null_mean": react["mean"],
        "null_var": react["var"],
        "untested": react["untested"],
        "untested_alone": react["alone"],
        "after_own": react["own"],
        "pooled": react["pooled"],
        "same_hare": react["same_hare"],
        "same_mean": react["same_mean"],
        "same_var": react["same_var"],
        # the pre-trigger rate counts hare, the post-trigger rate counts stag
        "pre_k": at["pre_hare"].to_numpy(dtype=float),
        "pre_n": at["pre_n"].to_numpy(dtype=float),
        "post_k": at["post_stag"].to_numpy(dtype=float),
        "post_n": at["post_n"].to_numpy(dtype=float),
    }
    per = pd.DataFrame(cols).groupby([*by, "trial_id"], sort=True).sum()
    for lv in _LEVELS:
        kl, nl = per[f"{lv}_k"], per[f"{lv}_n"]
        per[f"{lv}_kk"], per[f"{lv}_kn"], per[f"{lv}_nn"] = kl * kl, kl * nl, nl * nl
        per[f"{lv}_t"] = (nl > 0).astype(float)
    return per[list(_FEATURES)]


def trial_features(at: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """What ``group_labels`` and ``stability`` read of the agent-trials ``at`` grouped by
    ``by``: made once, it can be given to both (``features=``)."""
    return _trial_features(at, by)


def _groups(at: pd.DataFrame, by: list[str], features: pd.DataFrame | None = None) -> Any:
    """(key tuple, per-trial feature matrix, trial ids) for each group (``features``:
    ``trial_features(at, by)`` when already made)."""
    feats = _trial_features(at, by) if features is None else features
    for key, g in feats.groupby(level=list(range(len(by))), sort=True):
        key = key if isinstance(key, tuple) else (key,)
        yield key, g.to_numpy(dtype=float), g.index.get_level_values("trial_id").to_numpy()


#: the column of each feature in a feature matrix
_COLUMN = {name: i for i, name in enumerate(_FEATURES)}
#: a draw's trials can share one rate only if their sum of squared deviations from its
#: pooled rate, sum (k - r n)^2, is 0 up to rounding (a few 1e-16 of sum n^2): a cheap
#: screen of the draws before ``stats.shared_rate`` decides on each one that passes
_SCREEN = 1e-9


def _flat(
    matrix: np.ndarray, w: np.ndarray | None = None, summed: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Per level (``_LEVELS``) and per draw of the group's trials (the rows of the weights
    ``w``, ``summed`` = ``w @ matrix`` when made already; all its trials once when None):
    whether the trials drawn that have an outcome at that level show no spread, every one
    of them at the pooled rate (``stats.shared_rate``, as ``stats.cluster_rate_ci`` asks),
    so that a cluster-robust variance is 0 and says nothing. A draw of trials that all
    share one rate shares it too."""
    if w is not None and summed is None:
        summed = w @ matrix
    draws = 1 if summed is None else summed.shape[0]
    out: dict[str, np.ndarray] = {}
    for lv in _LEVELS:
        k, n = matrix[:, _COLUMN[f"{lv}_k"]], matrix[:, _COLUMN[f"{lv}_n"]]
        whole = n.sum() > 0 and shared_rate(k, n, float(k.sum() / n.sum()))
        if w is None or summed is None:
            out[lv] = np.full(draws, whole)
            continue
        nb = summed[:, _COLUMN[f"{lv}_n"]]
        flat = nb > 0
        if not whole:  # only draws with no spread up to rounding can share: shared_rate decides
            kb = summed[:, _COLUMN[f"{lv}_k"]]
            with np.errstate(invalid="ignore", divide="ignore"):
                r = kb / nb
                ss = (
                    summed[:, _COLUMN[f"{lv}_kk"]]
                    - 2 * r * summed[:, _COLUMN[f"{lv}_kn"]]
                    + r * r * summed[:, _COLUMN[f"{lv}_nn"]]
                )
            flat &= ss <= _SCREEN * summed[:, _COLUMN[f"{lv}_nn"]]
            for b in np.flatnonzero(flat):
                flat[b] = shared_rate(w[b] * k, w[b] * n, float(r[b]))
        out[lv] = flat
    return out


def _lower_bound(
    col: dict[str, np.ndarray], lv: str, z: float, flat: np.ndarray, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """The rate of level ``lv`` and its one-sided lower confidence bound (level 1 -
    ``alpha``, ``z`` its normal quantile), trials as clusters: when the rate varies between
    trials, the lower Wilson bound over the design-effect n with the t quantile of trials -
    1 degrees of freedom (one-sided: ``stats.cluster_rate_ci``'s interval at 2 ``alpha``;
    the cluster-robust normal bound it replaced held 0.85-0.90 instead of 0.95 at 3-10
    trials), Wilson on the number of trials when it does not (``flat``: every trial at the
    pooled rate, all one way or all at one rate in between, as a deterministic agent gives;
    the cluster-robust bound would then be the rate itself)."""
    k, n, t = col[f"{lv}_k"], col[f"{lv}_n"], col[f"{lv}_t"]
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(n > 0, k / n, np.nan)
        ss = col[f"{lv}_kk"] - 2 * r * col[f"{lv}_kn"] + r * r * col[f"{lv}_nn"]
        var = np.where(t > 1, t / (t - 1) * np.clip(ss, 0, None) / (n * n), np.nan)
        q = sps.t.ppf(1 - alpha, np.maximum(t - 1, 1))
        normal, _ = design_effect_bounds(r, var, n, q)
        # Wilson lower bound at p = 1 with t observations is 1 / (1 + z^2 / t)
        edge = np.where(r >= 1, 1 / (1 + z * z / t), 0.0)
    lower = np.where((r <= 0) | (r >= 1), edge, normal)
    between = np.flatnonzero(flat & (r > 0) & (r < 1))
    if between.size:  # one-sided at alpha: the lower end of the two-sided interval at 2 alpha
        bounds: dict[tuple[float, int], float] = {}
        for i in between:
            key = (float(r[i]), int(round(t[i])))
            if key not in bounds:
                bounds[key] = wilson_rate(*key, alpha=2 * alpha)[0]
            lower[i] = bounds[key]
    return r, np.nan_to_num(lower, nan=0.0)


def _decide(
    f: np.ndarray, rule: Rule, flat: dict[str, np.ndarray]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The rule on summed features, vectorised: ``f`` is (replicates x features), ``flat``
    per level and replicate whether its trials show no spread (``_flat``). Returns label
    codes (0..3 the patterns, 4 Unclassified/Inconsistent) and the evidence."""
    counts = f[:, : len(PATTERNS)]
    col = {name: f[:, i] for i, name in enumerate(_FEATURES)}
    classified = counts.sum(1)
    modal = np.argmax(counts, axis=1)
    top = np.take_along_axis(counts, modal[:, None], 1)[:, 0]
    tied = (counts == top[:, None]).sum(1) > 1
    z_crit = float(sps.norm.ppf(1 - rule.alpha))
    z = _excess_z(col["response_hare"], col["null_mean"], col["null_var"])
    same = _excess_z(col["same_hare"], col["same_mean"], col["same_var"])
    pre_rate, pre_lo = _lower_bound(col, "pre", z_crit, flat["pre"], rule.alpha)
    post_rate, post_lo = _lower_bound(col, "post", z_crit, flat["post"], rule.alpha)
    # a reaction needs its hares after the trigger and none beyond the baseline in the
    # trigger's own round (unseen then): those tell of a common cause
    reactive = (z > z_crit) & ~(same > z_crit)
    ok = np.select(
        [modal == 0, modal == 1, modal == 2, modal == 3],
        [
            pre_lo >= rule.pre_emptive_min_hare,
            reactive,
            post_lo >= rule.persist_min_stag,
            reactive,
        ],
        default=False,
    )
    ok &= (classified >= rule.min_agent_trials) & ~tied
    labels = np.where(ok, modal, len(PATTERNS))
    evidence = {
        "z": z,
        "same": same,
        "pre_rate": pre_rate,
        "pre_lo": pre_lo,
        "post_rate": post_rate,
        "post_lo": post_lo,
        "classified": classified,
    }
    return labels, evidence


def _excess_z(hares: np.ndarray, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """The one-sided z of ``hares`` beyond their null ``mean`` (variance ``var``), with a
    continuity correction; -inf where there is no variance (nothing was compared)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        sd = np.sqrt(var)
        return np.where(sd > 0, (hares - mean - 0.5) / np.where(sd > 0, sd, 1), -np.inf)


def group_labels(
    classified: pd.DataFrame,
    by: list[str],
    n_boot: int = 500,
    seed: int = 0,
    rule: Rule = RULE,
    features: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per group (e.g. model x condition): the calibrated label, its bootstrap confidence
    and the evidence behind it (see the module docstring), and its agent-trials of each
    pattern (``n_<pattern>``; ``n_no valid action``: those with no valid action, which
    have none). A group whose every agent-trial has no valid action is labelled
    ``NO_VALID``, with no confidence. ``features``: what ``trial_features(classified, by)``
    gives, when already made."""
    rng = np.random.default_rng(seed)
    rows = []
    if classified.empty:
        return pd.DataFrame(columns=[*by, "label", "confidence"])
    patterns = {
        k if isinstance(k, tuple) else (k,): v
        for k, v in classified.groupby([classified[c].astype(str) for c in by], sort=True)[
            "archetype"
        ]
    }
    for key, matrix, _ in _groups(classified, by, features):
        labels, ev = _decide(matrix.sum(0, keepdims=True), rule, _flat(matrix))
        label = int(labels[0])
        same = 0
        n_trials = matrix.shape[0]
        if n_boot > 0:
            done = 0
            batch = max(1, min(n_boot, 4_000_000 // max(n_trials, 1)))
            while done < n_boot:
                size = min(batch, n_boot - done)
                w = boot_weights(n_trials, size, rng)
                summed = w @ matrix
                boot_labels, _ = _decide(summed, rule, _flat(matrix, w, summed))
                same += int((boot_labels == label).sum())
                done += size
        z, same_z = float(ev["z"][0]), float(ev["same"][0])
        counts = patterns[key].value_counts()
        n_cls = int(ev["classified"][0])
        modal = int(np.argmax(matrix.sum(0)[: len(PATTERNS)]))
        needs = _trials_to_carry(matrix, PATTERNS[modal], rule) if label == len(PATTERNS) else None
        # never acted: no pattern, so no label (its draws were made: other groups' stay)
        idle = int(counts.get(NO_VALID, 0)) == int(counts.sum())
        rows.append(
            {
                **dict(zip(by, key, strict=True)),
                "label": NO_VALID if idle else LABELS[label],
                "confidence": same / n_boot if n_boot and not idle else math.nan,
                "agent_trials": int(counts.sum()),
                "trials": n_trials,
                "classified": n_cls,
                "modal_pattern": PATTERNS[int(np.argmax(matrix.sum(0)[: len(PATTERNS)]))]
                if n_cls
                else NO_VALID
                if idle
                else UNCLASSIFIED,
                "modal_share": float(matrix.sum(0)[: len(PATTERNS)].max() / n_cls)
                if n_cls
                else math.nan,
                "reaction_z": z if math.isfinite(z) else math.nan,
                "reaction_p": float(sps.norm.sf(z)) if math.isfinite(z) else math.nan,
                # hares in the round another player first hunted hare, before it was seen
                "same_round_z": same_z if math.isfinite(same_z) else math.nan,
                # post-trigger agent-rounds with no untriggered round of the model to compare
                "reaction_untested": int(matrix.sum(0)[_COLUMN["untested"]]),
                # post-trigger agent-rounds after a hare of the agent's own, left out
                "reaction_after_own": int(matrix.sum(0)[_COLUMN["after_own"]]),
                # tested post-trigger agent-rounds whose baseline is other adversary arms'
                "reaction_pooled": int(matrix.sum(0)[_COLUMN["pooled"]]),
                "pre_trigger_hare": float(ev["pre_rate"][0]),
                # a rate of no agent-rounds has no bound (the rule reads it as 0)
                "pre_trigger_hare_lo": _bound(ev["pre_rate"][0], ev["pre_lo"][0]),
                "post_trigger_stag": float(ev["post_rate"][0]),
                "post_trigger_stag_lo": _bound(ev["post_rate"][0], ev["post_lo"][0]),
                **{f"n_{lab}": int(counts.get(lab, 0)) for lab in (*LABELS, NO_VALID)},
                "label_note": (
                    f"too few trials for its modal pattern, {PATTERNS[modal]}: the rule "
                    f"needs {needs} or more trials like these, even with no noise, to carry "
                    f"it (it has {n_trials})"
                    if needs is not None and n_cls
                    else _untestable(PATTERNS[modal], matrix, label, z, same_z, rule)
                    if n_cls
                    else ""
                ),
            }
        )
    return pd.DataFrame(rows)


def _untestable(
    modal: str, matrix: np.ndarray, label: int, z: float, same: float, rule: Rule = RULE
) -> str:
    """Why a reaction label (the modal pattern) could not be tested, if it could not: the
    group's post-trigger rounds in the risk set all came at rounds where no agent-trial of
    the model was untriggered, so a reaction cannot be told from a round trend; or every
    post-trigger round followed a hare (or an announced one) of the agent's own, so it
    cannot be told from the agent keeping to a hare it chose unprovoked; or its reaction
    passed and so did the same-round check (``same``), so it cannot be told from a common
    cause."""
    if label != len(PATTERNS) or modal not in (DEFECTION_PRONE, ADAPTIVE):
        return ""
    z_crit = float(sps.norm.ppf(1 - rule.alpha))
    if z > z_crit and same > z_crit:
        return (
            f"its modal pattern, {modal}, claims a reaction, and it hunted hare after its "
            f"triggers beyond its baseline (reaction_z {z:.2f}), but also in the very round "
            f"another player first hunted hare, before it could see it (same_round_z "
            f"{same:.2f}): a cause shared with the others' hare (the design cell, a mood "
            "common to the trial's seats, talk) cannot be told from a reaction here"
        )
    totals = matrix.sum(0)
    if totals[_COLUMN["responses"]] > 0:
        return ""
    if totals[_COLUMN["untested_alone"]] > 0:
        return (
            f"its modal pattern, {modal}, claims a reaction, which cannot be tested here: "
            "its adversary arm (an injector's payload or a deceiver's talk, meant to change "
            "what the agent does) is compared within itself only, and every trial of it was "
            "triggered by then, so no untriggered round of the arm is left to compare"
        )
    if totals[_COLUMN["untested"]] > 0:
        return (
            f"its modal pattern, {modal}, claims a reaction, which cannot be told from a round "
            "trend here: every round after its triggers is one in which no agent-trial of the "
            "model in this game was untriggered (triggers at the same round in every trial); "
            "a cell without the trigger (no adversary) gives the rounds to compare"
        )
    if totals[_COLUMN["after_own"]] > 0:
        return (
            f"its modal pattern, {modal}, claims a reaction, which cannot be told from its own "
            "inclination here: every round after its triggers follows a hare of its own, or "
            "comes within three rounds of its own talk that promised no stag before its "
            "trigger (either may have drawn the trigger), and only rounds free of both are "
            "compared"
        )
    return ""


#: the steady labels, and the level whose rate each claims (``_lower_bound``)
_STEADY = {COOPERATION_PERSISTENT: "post", PRE_EMPTIVE: "pre"}


def _trials_to_carry(matrix: np.ndarray, label: str, rule: Rule, most: int = 100_000) -> int | None:
    """For a steady ``label`` (``_STEADY``) whose rate the group's trials all show alike
    (no spread, as a noise-free agent gives: nothing but their number is uncertain), the
    fewest such trials (``_carries``) that would carry it, when more than the group has
    would (Wilson on 8 trials of all stag is below 0.75); ``None`` otherwise: a reaction
    label, trials that vary (more of them is a guess at what they would show), a rate
    short of the threshold (no count up to ``most`` carries it), or a group whose own
    count would carry it (its label failed for another reason)."""
    have = matrix.shape[0]
    level = _STEADY.get(label)
    if have == 0 or level is None or not _flat(matrix)[level][0]:
        return None
    if _carries(matrix, have, label, rule):
        return None
    lo, hi = have, have
    while not _carries(matrix, hi, label, rule):  # lo fails, hi carries once found
        if hi >= most:
            return None
        lo, hi = hi, min(most, hi * 2)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _carries(matrix, mid, label, rule) else (mid, hi)
    return int(hi)


def _bound(rate: float, lower: float) -> float:
    """A rate's lower bound as reported: none (NaN) for a rate of no agent-rounds."""
    return float(lower) if math.isfinite(rate) else math.nan


def model_labels(
    classified: pd.DataFrame, n_boot: int = 500, seed: int = 0, by: str = "model"
) -> pd.DataFrame:
    """Per model (pooled over conditions): ``group_labels`` by one column."""
    return group_labels(classified, [by], n_boot=n_boot, seed=seed)


def _carries(matrix: np.ndarray, t: int, label: str, rule: Rule) -> bool:
    """Could ``t`` trials just like the group's average trial (its feature ``matrix``)
    carry its ``label``? The rule's lower bounds need enough trials: with too few, even a
    noise-free agent is Unclassified, which says nothing about stability."""
    if label == UNCLASSIFIED or t == 0:
        return True
    expected = matrix.mean(0, keepdims=True) * t  # with the group's spread, or none
    return bool(LABELS[int(_decide(expected, rule, _flat(matrix))[0][0])] == label)


def stability(
    classified: pd.DataFrame,
    by: str | list[str] = "model",
    rule: Rule = RULE,
    n_cohorts: int = 4,
    features: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Does each group keep its label across cohorts: split halves of trials (alternate
    trial ids) and ``n_cohorts`` seed cohorts (repetition modulo ``n_cohorts``), each
    labelled by the whole rule. ``features``: ``trial_features(classified, by)`` when
    already made."""
    keys = [by] if isinstance(by, str) else list(by)
    rows = []
    # groups whose agent-trials never acted: no label to keep (``NO_VALID``)
    acted = (classified["archetype"] != NO_VALID).groupby(
        [classified[c].astype(str) for c in keys], sort=True
    )
    idle = {k if isinstance(k, tuple) else (k,) for k, any_ in acted.any().items() if not any_}

    def label_of(matrix: np.ndarray) -> str:
        if matrix.shape[0] == 0:
            return UNCLASSIFIED
        return LABELS[int(_decide(matrix.sum(0, keepdims=True), rule, _flat(matrix))[0][0])]

    reps = classified.assign(_t=classified["trial_id"].astype(str)).groupby("_t")["repetition"]
    rep_of = reps.first().astype(int)
    for key, matrix, trial_ids in _groups(classified, keys, features):
        parity = np.arange(len(trial_ids)) % 2  # trial ids are sorted: alternate halves
        halves = [label_of(matrix[parity == h]) for h in (0, 1)]
        cohort = rep_of.reindex(trial_ids).to_numpy() % n_cohorts
        cohort_ids = sorted(set(cohort))
        cohorts = [label_of(matrix[cohort == c]) for c in cohort_ids]
        overall = label_of(matrix)
        half_size = int(min((parity == h).sum() for h in (0, 1)))
        cohort_size = int(min((cohort == c).sum() for c in cohort_ids)) if cohort_ids else 0

        halves_ok = _carries(matrix, half_size, overall, rule)
        cohorts_ok = _carries(matrix, cohort_size, overall, rule)
        short = [
            f"{what} of {t} trials"
            for what, t, ok in (
                ("halves", half_size, halves_ok),
                ("cohorts", cohort_size, cohorts_ok),
            )
            if not ok
        ]
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "label": overall,
                "half_a": halves[0],
                "half_b": halves[1],
                "halves_agree": (halves[0] == halves[1]) if halves_ok else None,
                "seed_cohorts": len(cohorts),
                "seed_agreement": float(np.mean([c == overall for c in cohorts]))
                if cohorts and cohorts_ok
                else np.nan,
                "note": (
                    f"too few trials to test: {' and '.join(short)} cannot carry the label "
                    "even without noise"
                    if short
                    else ""
                ),
            }
        )
        if key in idle:
            rows[-1].update(label=NO_VALID, half_a=None, half_b=None, halves_agree=None,
                            seed_agreement=np.nan, note=NO_VALID)  # fmt: skip
    out = pd.DataFrame(rows)
    for col in ("half_a", "half_b"):  # no label (None): "n/a" in the report, never a blank
        if col in out.columns:  # (pandas 3 makes a column of texts and None texts and NaN)
            out[col] = out[col].astype(object).where(out[col].notna(), None)
    return out
