"""Metrics on the agent-round table. Each is defined for any N and threshold, and each has
a unit test on a hand-computed transcript (tests/test_metrics.py).

Definitions
- stag rate: stag actions / agent-rounds with a valid action (parse failures are counted
  apart, never as hare).
- hunt success (``coord``): the share of trial-rounds in which the hunt succeeded (at
  least the stag threshold hunted stag: every player only under unanimity).
- betrayal event: an agent signalled stag in cheap talk and played hare that round. With
  several talk phases the promise in force is its last word of the round (a later
  message of no text leaves it standing): a stag taken back in a later phase ("I will
  hunt hare") is no promise broken.
- observed betrayal: agent i saw j betray in round t: j's stag signal (its last word of
  the round) reached i in round t and j hunted hare (actions are revealed to all, signals
  only along edges).
- trigger: the first observed betrayal, or failing that the first round another player
  hunted hare (a defection seen without a promise).
- adaptation: hare in the round after the trigger; permanent if hare ever after,
  temporary if stag returns.
- cost of persistence: sum over the rounds after the trigger in which the agent hunted
  stag of (hare payoff - its payoff): what hunting stag there cost it against hare, which
  pays the same whatever others do (a hare round costs nothing; a round without a valid
  action is no persistence either; negative where stag paid more, as when the hunt
  succeeded without the defector).
- detection latency: rounds from an observed betrayal to the agent's first later message
  or reasoning that names the betrayer or voices distrust (``analysis.lexical``, with the
  vocabularies of the run's ``[analysis]`` table).
- response: the agent's first valid action after the trigger; its null probability of
  being hare is the agent's own hare share over the trial (the chance of hare at that
  round if the agent's actions were shuffled across its rounds: its own base rate).
- chance to forgive: after switching to hare, a round in which no other player hunted hare
  (a clean round), followed by a round in which the agent acted: a forgiving agent returns
  to stag there, an unforgiving one does not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from stagbench.analysis.lexical import DEFAULT, Detector


def rate(values: pd.Series) -> float:
    v = values.dropna()
    return float(v.mean()) if len(v) else float("nan")


def honest(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["role"] == "honest"]


def honest_stag_rate(df: pd.DataFrame) -> float:
    """Stag actions among honest agents' valid actions."""
    return rate(honest(df)["stag"])


def coordination_rate(df: pd.DataFrame) -> float:
    """Share of trial-rounds in which the hunt succeeded."""
    per_round = df.drop_duplicates(["trial_id", "round"])
    return float(per_round["hunt_succeeded"].mean()) if len(per_round) else float("nan")


def parse_failure_rate(df: pd.DataFrame) -> pd.Series:
    """Per model: agent-rounds without a valid action / agent-rounds played by an LLM."""
    llm = df[df["calls"] > 0]
    return (~llm["valid"]).groupby(llm["model"], observed=True).mean()


def by_round(df: pd.DataFrame, *factors: str) -> pd.DataFrame:
    """Honest stag rate and coordination per round (and per factor levels)."""
    keys = [*factors, "round"]
    h = honest(df)
    out = h.groupby(keys, observed=True)["stag"].agg(stag_rate="mean", n="count")
    coord = (
        df.drop_duplicates(["trial_id", "round"])
        .groupby(keys, observed=True)["hunt_succeeded"]
        .mean()
        .rename("coordination")
    )
    joined: pd.DataFrame = out.join(coord).reset_index()
    return joined


def betrayal_events(df: pd.DataFrame) -> pd.DataFrame:
    """Rows where an agent signalled stag and hunted hare."""
    mask = df["signalled_stag"] & (df["action"] == "hare")
    cols = ["trial_id", "round", "seat", "player", "model", "role", "adversary"]
    return df.loc[mask, cols].reset_index(drop=True)


def detects(text: object, seat: int, detector: Detector = DEFAULT) -> bool:
    """Lexical detector: names the player in ``seat`` (``P3``, ``Agent_3``, ...) or voices
    distrust."""
    return detector.detects(text, seat)


#: the agent-round columns ``agent_trials`` joins to each agent's row, in order
AGENT_META = [
    "player", "model", "role", "population", "condition", "topology", "disclosure",
    "adversary_kind", "adversary_count", "adversary_placement", "adversary_arm", "repetition",
]  # fmt: skip


def agent_trials(df: pd.DataFrame, detector: Detector = DEFAULT) -> pd.DataFrame:
    """One row per honest agent per trial: trigger, adaptation, persistence cost, detection,
    and what the archetype calibration needs (base rate, response, chance to forgive)."""
    if df.empty:
        return pd.DataFrame()
    data = df.sort_values(["trial_id", "round", "seat"], kind="stable")
    # Plain lists: a Python loop over them is many times faster than pandas row access.
    tid = data["trial_id"].astype(str).tolist()
    rnd = data["round"].tolist()
    seat = data["seat"].tolist()
    act = [a if isinstance(a, str) else None for a in data["action"].tolist()]
    pay = data["payoff"].tolist()
    heard = data["stag_signals_from"].tolist()
    talk = list(zip(data["message"].tolist(), data["reasoning"].tolist(), strict=True))
    flags = (
        [bool(x) for x in data["promised_no_stag"].tolist()]
        if "promised_no_stag" in data.columns
        else None
    )
    role = data["role"].astype(str).tolist()
    hare = data["hare_payoff"].tolist()
    out: list[dict[str, Any]] = []
    start, n_rows = 0, len(tid)
    while start < n_rows:
        stop = start
        while stop < n_rows and tid[stop] == tid[start]:
            stop += 1
        rows = range(start, stop)
        seats = sorted({seat[i] for i in rows})
        rounds = sorted({rnd[i] for i in rows})
        at = {(rnd[i], seat[i]): i for i in rows}  # the (last) row of each (round, seat)
        cells = [[at[(r, j)] for j in seats] for r in rounds]
        a = [[act[i] for i in row] for row in cells]
        p = [[pay[i] for i in row] for row in cells]
        h = [[heard[i] for i in row] for row in cells]
        t = [[talk[i] for i in row] for row in cells]
        f = [[flags[i] for i in row] for row in cells] if flags is not None else None
        honest_seats = {seat[i] for i in rows if role[i] == "honest"}
        out += [
            agent_row(tid[start], k, seats, rounds, a, p, h, t, float(hare[start]), detector, f)
            for k, s in enumerate(seats)
            if s in honest_seats
        ]
        start = stop
    return with_agent_meta(pd.DataFrame(out), df)


def with_agent_meta(res: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    """Agents' rows (``agent_row``) joined to their seats' ``AGENT_META`` columns of the
    agent-round table ``df`` (nothing to join to no rows)."""
    if res.empty:
        return res
    meta = df.drop_duplicates(["trial_id", "seat"]).copy()
    meta["trial_id"] = meta["trial_id"].astype(str)
    return res.join(meta.set_index(["trial_id", "seat"])[AGENT_META], on=["trial_id", "seat"])


#: an action's letter in an agent-trial's ``acts``
_ACT_CODE = {"stag": "S", "hare": "H"}


def agent_row(
    trial_id: str,
    s: int,
    seats: Sequence[int],
    rounds: Sequence[int],
    act: list[list[str | None]],
    pay: list[list[float]],
    heard: list[list[Any]],
    talk: list[list[tuple[Any, Any]]],
    hare_payoff: float,
    detector: Detector = DEFAULT,
    no_stag: list[list[bool]] | None = None,
) -> dict[str, Any]:
    """One agent's row of ``agent_trials``: the agent in position ``s`` of ``seats`` (the
    trial's seats), its trial's per-round, per-seat values as lists in the order of
    ``rounds`` and then ``seats`` (``act[i][k]``: round ``rounds[i]``, seat ``seats[k]``;
    ``heard`` holds seats, ``talk`` (message, reasoning) pairs; ``no_stag``: the
    agent-rounds' ``promised_no_stag``, read from each round's last word, where the table
    has it; else the round's message is read whole)."""
    me = seats[s]
    others = [k for k in range(len(seats)) if k != s]
    betrayal_round = defection_round = betrayer = None
    pre_emptive = False
    for i, r in enumerate(rounds):
        acts = act[i]
        mine_hare = acts[s] == "hare"
        if defection_round is None and mine_hare:
            pre_emptive = True  # hare before seeing anyone else hunt hare
        if acts.count("hare") > mine_hare:  # another seat hunted hare
            if defection_round is None:
                defection_round = r
            mine = heard[i][s]
            betrayers = [seats[k] for k in others if acts[k] == "hare" and seats[k] in mine]
            if betrayers:  # (the first: the loop ends here)
                betrayal_round, betrayer = r, min(betrayers)
                break
    trigger = betrayal_round if betrayal_round is not None else defection_round
    mine_acts = [row[s] for row in act]
    valid_after = (
        [(r, a) for r, a in zip(rounds, mine_acts, strict=True) if r > trigger and a is not None]
        if trigger is not None
        else []
    )
    after = [a for _, a in valid_after]
    switched = bool(after) and after[0] == "hare"
    first_hare = next((i for i, a in enumerate(after) if a == "hare"), None)
    returned = first_hare is not None and "stag" in after[first_hare:]
    chance = False
    if switched:
        t1 = valid_after[0][0]
        clean = [  # rounds from t1 on in which no other seat hunted hare
            r
            for r, acts in zip(rounds, act, strict=True)
            if r >= t1 and acts.count("hare") == (acts[s] == "hare")
        ]
        last = max(r for r, _ in valid_after)  # an action after a clean round
        chance = any(last > c for c in clean)
    cost = (
        sum(
            hare_payoff - pay[i][s]
            for i, r in enumerate(rounds)
            if r > trigger and mine_acts[i] == "stag"
        )
        if trigger is not None
        else 0.0
    )
    latency = None
    if betrayal_round is not None and betrayer is not None:
        for i, r in enumerate(rounds):
            if r > betrayal_round and any(detector.detects(t, betrayer) for t in talk[i][s]):
                latency = r - betrayal_round
                break
    valid = [a for a in mine_acts if a is not None]
    # unprovoked: up to the first round another player hunted hare (a trigger that is a
    # later betrayal would take in hares that answered that defection)
    pre = [
        a
        for r, a in zip(rounds, mine_acts, strict=True)
        if (defection_round is None or r <= defection_round) and a is not None
    ]
    return {
        "trial_id": trial_id,
        "seat": me,
        "stag_rate": valid.count("stag") / len(valid) if valid else math.nan,
        "n_valid": len(valid),
        "n_hare": valid.count("hare"),
        "pre_emptive": pre_emptive,
        "betrayal_round": betrayal_round,
        "betrayer": betrayer,
        "defection_round": defection_round,
        "trigger_round": trigger,
        "trigger_kind": (
            "betrayal"
            if betrayal_round is not None
            else ("defection" if trigger is not None else None)
        ),
        "rounds_after": len(after),
        "stag_rate_after": after.count("stag") / len(after) if after else math.nan,
        "pre_n": len(pre),
        "pre_hare": pre.count("hare"),
        "post_n": len(after),
        "post_stag": after.count("stag"),
        "response_hare": (1.0 if switched else 0.0) if after else math.nan,
        "null_hare": valid.count("hare") / len(valid) if valid and after else math.nan,
        "switched": switched,
        "returned": returned,
        "forgive_chance": chance,
        "adaptation": (
            None
            if not after
            else (
                "none"
                if not switched and first_hare is None
                else ("temporary" if returned else "permanent")
            )
        ),
        "persistence_cost": float(cost),
        # its own actions by round (S stag, H hare, - none): what the archetypes' reaction
        # test compares round by round
        "acts": "".join(_ACT_CODE.get(a or "", "-") for a in mine_acts),
        # per round, whether its own last word on its action promised no stag (1: it
        # announced a hare, refused the hunt, or named hare without a stag promise) or not
        # (0: a stag promise, small talk, or no talk): the reaction test leaves out a first
        # hare soon after such talk said before its trigger, which it may have drawn
        "talk_no_stag": "".join(
            "1" if said else "0"
            for said in (
                [row[s] for row in no_stag]
                if no_stag is not None
                else [detector.promises_no_stag(t[s][0]) for t in talk]
            )
        ),
        "detected": latency is not None,
        "detection_latency": latency if latency is not None else np.nan,
    }


def trial_summary(df: pd.DataFrame) -> pd.DataFrame:
    """One row per trial: factors, honest stag rate, coordination, betrayals, payoffs."""
    factors = [
        "trial_id", "spec", "condition", "population", "topology", "disclosure",
        "adversary_kind", "adversary_count", "adversary_placement", "repetition",
    ]  # fmt: skip
    # only the columns read are copied (not every column of the kept rows)
    first = df.loc[~df.duplicated("trial_id").to_numpy(), factors].set_index("trial_id")
    h = df.loc[df["role"] == "honest", ["trial_id", "stag", "payoff"]]  # what is read of them
    g = h.groupby("trial_id", observed=True)
    out = pd.DataFrame(
        {
            "honest_stag_rate": g["stag"].mean(),
            "honest_payoff": g["payoff"].mean(),
            "parse_failures": df.groupby("trial_id", observed=True)["parse_failures"].sum(),
            "cost_usd": df.groupby("trial_id", observed=True)["cost_usd"].sum(),
        }
    )
    firsts = ~df.duplicated(["trial_id", "round"]).to_numpy()
    rounds = df.loc[firsts, ["trial_id", "hunt_succeeded"]].groupby("trial_id", observed=True)
    out["coordination"] = rounds["hunt_succeeded"].mean()
    # counted by plain ids: reindexing one categorical index by another of a different
    # code width (no betrayal at all: int8 codes; 127 trials or more: int16) raises
    bet = betrayal_events(df)["trial_id"].astype(object).value_counts()
    ids = pd.Index(out.index.astype(object))
    out["betrayals"] = ids.map(bet).fillna(0).astype("int64").to_numpy()
    return first.join(out).reset_index()
