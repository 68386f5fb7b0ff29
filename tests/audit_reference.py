"""The transcript audit as it stood before its fast rewrite (commit 6528958), kept word for
word as the reference the differential tests hold ``stagbench.games.audit`` to: the rewrite
must find exactly the problems this one finds, in the same words, on every input."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import orjson
from pydantic import ValidationError

from stagbench.games.stag_hunt import Action, payoffs
from stagbench.records import GameConfig

#: payoffs are floats written as JSON; anything closer than this is the same number
TOLERANCE = 1e-6


def _close(a: Any, b: float) -> bool:
    return isinstance(a, int | float) and math.isclose(float(a), b, rel_tol=1e-9, abs_tol=TOLERANCE)


_ACTIONS: dict[Any, Action | None] = {None: None, "stag": Action.STAG, "hare": Action.HARE}


def _action(name: Any) -> Action | None:
    try:
        return _ACTIONS[name]
    except (KeyError, TypeError):
        raise ValueError(f"not an action: {name!r}") from None


@functools.lru_cache(maxsize=256)
def _config(game_json: bytes) -> GameConfig:
    """A run has few distinct games: validate each once, not once per transcript."""
    return GameConfig.model_validate_json(game_json)


@functools.lru_cache(maxsize=4096)
def _payoffs(config: GameConfig, joint: tuple[Action | None, ...]) -> tuple[float, ...]:
    return payoffs(config, joint)


def audit_events(events: Sequence[dict[str, Any]]) -> list[str]:
    """Every way the events disagree with the engine or with each other."""
    problems: list[str] = []
    head, end = events[0], events[-1]
    try:
        config = _config(orjson.dumps(head["trial"]["game"], option=orjson.OPT_SORT_KEYS))
        n = config.n_players
        seats = sorted(int(s["seat"]) for s in head["seats"])
        reach: dict[int, list[int]] = {}
        for u, v in head["edges"]:
            reach.setdefault(int(u), []).append(int(v))
        for targets in reach.values():
            targets.sort()
    except (KeyError, TypeError, ValueError, ValidationError, orjson.JSONEncodeError) as exc:
        return [f"the header cannot be read: {exc}"]
    if seats != list(range(n)):
        problems.append(f"the header seats {seats}, not the {n} players 0..{n - 1}")
    acts: dict[int, dict[int, Action | None]] = {}
    round_ends: list[dict[str, Any]] = []
    failures = calls_in = calls_out = 0
    cost = 0.0
    for e in events[1:-1]:
        kind = e.get("type")
        try:
            if kind == "action":
                r, s = int(e["round"]), int(e["seat"])
                if s in acts.setdefault(r, {}):
                    problems.append(f"round {r}: seat {s} has two actions")
                acts[r][s] = _action(e["action"])
                failures += bool(e.get("parse_failed"))
            elif kind == "message":
                failures += bool(e.get("parse_failed"))
                sender = int(e["sender"])
                heard = reach.get(sender, []) if e["text"] else []
                if e["receivers"] != heard and sorted(int(x) for x in e["receivers"]) != heard:
                    problems.append(
                        f"round {e['round']}: P{sender + 1}'s message went to {e['receivers']}, "
                        f"not along the recorded edges ({heard})"
                    )
            elif kind == "model_call":
                call = e["call"]
                calls_in += int(call["input_tokens"])
                calls_out += int(call["output_tokens"])
                cost += float(call["cost_usd"])
            elif kind == "round_end":
                round_ends.append(e)
        except (KeyError, TypeError, ValueError) as exc:
            problems.append(f"a {kind} event cannot be read: {exc!r}")
    totals = [0.0] * n
    for i, e in enumerate(round_ends, 1):
        said = e.get("round")
        if said != i:
            problems.append(f"round_end {i} says round {said}")
            continue
        mine = acts.get(i, {})
        if sorted(mine) != list(range(n)):
            missing = sorted(set(range(n)) - set(mine))
            problems.append(f"round {i}: no action recorded for seats {missing}")
            continue
        joint = tuple(mine[s] for s in range(n))
        want = _payoffs(config, joint)
        stags = sum(a is Action.STAG for a in joint)
        if [None if a is None else a.value for a in joint] != e.get("actions"):
            problems.append(f"round {i}: round_end actions {e.get('actions')} differ from the "
                            f"actions recorded ({[a and a.value for a in joint]})")  # fmt: skip
        got = e.get("payoffs")
        if got != list(want) and (
            not isinstance(got, list)
            or len(got) != n
            or not all(_close(g, w) for g, w in zip(got, want, strict=True))
        ):
            problems.append(f"round {i}: payoffs {got} are not the game's {list(want)}")
        if e.get("stag_count") != stags:
            problems.append(
                f"round {i}: stag_count {e.get('stag_count')}, the actions give {stags}"
            )
        if e.get("hunt_succeeded") != (stags >= config.stag_needed):
            problems.append(f"round {i}: hunt_succeeded is wrong for {stags} stag hunters")
        totals = [t + w for t, w in zip(totals, want, strict=True)]
    if len(round_ends) > config.rounds:
        problems.append(f"{len(round_ends)} rounds played, the game has {config.rounds}")
    extra = sorted(set(acts) - set(range(1, len(round_ends) + 1)))
    if extra:
        problems.append(f"actions recorded for rounds {extra}, which never ended")
    got_totals = end.get("totals")
    if (
        not isinstance(got_totals, list)
        or len(got_totals) != n
        or not all(_close(g, w) for g, w in zip(got_totals, totals, strict=True))
    ):
        problems.append(f"totals {got_totals} are not the sum of the rounds' payoffs {totals}")
    if end.get("parse_failures") != failures:
        problems.append(f"parse_failures {end.get('parse_failures')}, the events show {failures}")
    if (end.get("input_tokens"), end.get("output_tokens")) != (calls_in, calls_out):
        problems.append("the token totals differ from the sum of the model calls")
    if not _close(end.get("cost_usd", 0.0), cost):
        problems.append("the cost total differs from the sum of the model calls")
    return problems
