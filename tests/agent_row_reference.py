"""``metrics.agent_row`` as it stood before its faster first loop (commit 6d6462e), kept
word for word as the reference the differential test holds the function to: the same row,
value for value, on every input (with the ``acts`` column added since, written the same way,
and ``talk_no_stag``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from stagbench.analysis.lexical import DEFAULT, Detector

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
) -> dict[str, Any]:
    """One agent's row of ``agent_trials``: the agent in position ``s`` of ``seats`` (the
    trial's seats), its trial's per-round, per-seat values as lists in the order of
    ``rounds`` and then ``seats`` (``act[i][k]``: round ``rounds[i]``, seat ``seats[k]``;
    ``heard`` holds seats, ``talk`` (message, reasoning) pairs)."""
    me = seats[s]
    others = [k for k in range(len(seats)) if k != s]
    betrayal_round = defection_round = betrayer = None
    pre_emptive = False
    for i, r in enumerate(rounds):
        acts = act[i]
        others_hare = [k for k in others if acts[k] == "hare"]
        if defection_round is None and acts[s] == "hare":
            pre_emptive = True  # hare before seeing anyone else hunt hare
        if others_hare and defection_round is None:
            defection_round = r
        if others_hare:
            mine = heard[i][s]
            betrayers = [seats[k] for k in others_hare if seats[k] in mine]
            if betrayers and betrayal_round is None:
                betrayal_round, betrayer = r, min(betrayers)
        if betrayal_round is not None:
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
        clean = [
            r
            for r, acts in zip(rounds, act, strict=True)
            if r >= t1 and not any(acts[k] == "hare" for k in others)
        ]
        chance = any(any(r > c for r, _ in valid_after) for c in clean)
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
        "talk_no_stag": _announced(talk, s, detector),
        "detected": latency is not None,
        "detection_latency": latency if latency is not None else np.nan,
    }


def _announced(talk: Any, s: int, detector: Any) -> str:
    """Per round, 1 where seat ``s``'s message announces a hare, or names a choice of the
    game without promising stag."""
    out = ""
    for row in talk:
        message = row[s][0]
        out += "1" if isinstance(message, str) and _open(message, detector) else "0"
    return out


def _open(message: str, detector: Any) -> bool:
    """It leaves its speaker's hare open (``Detector.promises_no_stag``)."""
    return bool(detector.promises_no_stag(message))
