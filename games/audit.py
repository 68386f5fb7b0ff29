"""Re-derive a transcript's outcome from its recorded actions with the engine, so a
tampered or inconsistent file (a payoff changed, an action flipped, totals multiplied, a
seat's action missing) is found instead of analysed.

It reads the parsed events of ``stagbench.records`` (dicts, the fast path's form) and
returns every problem found, in words; an empty list means the file agrees with itself
and with the game's rules.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import orjson
from pydantic import ValidationError

from stagbench.errors import TranscriptError
from stagbench.games.stag_hunt import Action, payoffs
from stagbench.records import GameConfig, check_events

#: payoffs are floats written as JSON; anything closer than this is the same number
TOLERANCE = 1e-6


def _close(a: Any, b: float) -> bool:
    return isinstance(a, int | float) and math.isclose(float(a), b, rel_tol=1e-9, abs_tol=TOLERANCE)


_ACTIONS: dict[Any, Action | None] = {None: None, "stag": Action.STAG, "hare": Action.HARE}


@functools.lru_cache(maxsize=256)
def _config(game_json: bytes) -> GameConfig:
    """A run has few distinct games: validate each once, not once per transcript."""
    return GameConfig.model_validate_json(game_json)


@functools.lru_cache(maxsize=8192)
def _payoffs(game_json: bytes, joint: tuple[str | None, ...]) -> tuple[float, ...]:
    """The engine's payoffs for a joint action named as recorded (``"stag"``, ``"hare"``,
    ``None``), once per game and joint action: a run repeats few of them."""
    return payoffs(_config(game_json), tuple(_ACTIONS[a] for a in joint))


def audit_events(events: Sequence[dict[str, Any]], record: bool = True) -> list[str]:
    """Every way the events disagree with the engine or with each other. ``record``: also
    the record's own consistency, listed after the rest (``_roles``: the header's seats
    against its adversary arm; an honest seat's messages and actions against what its
    model calls parsed, ``_against_calls``; no event of an unknown type). A seat silent
    in a phase may have no message event (hand-made transcripts leave them out): that is
    no contradiction, and is not checked."""
    problems: list[str] = []
    head, end = events[0], events[-1]
    try:
        game_json = orjson.dumps(head["trial"]["game"], option=orjson.OPT_SORT_KEYS)
        config = _config(game_json)
        n = config.n_players
        seats = sorted(int(s["seat"]) for s in head["seats"])
        reach: dict[int, list[int]] = {}
        for u, v in head["edges"]:
            reach.setdefault(int(u), []).append(int(v))
        for targets in reach.values():
            targets.sort()
    except (KeyError, TypeError, ValueError, ValidationError, orjson.JSONEncodeError) as exc:
        return [f"the header cannot be read: {exc}"]
    everyone = list(range(n))
    if seats != everyone:
        problems.append(f"the header seats {seats}, not the {n} players 0..{n - 1}")
    honest, record_problems = _roles(head) if record else (set(), [])
    # the recorded actions by their names ("stag", "hare", None): the engine's Action
    # enum is only built once per distinct joint action (``_payoffs``)
    acts: dict[int, dict[int, str | None]] = {}
    round_ends: list[dict[str, Any]] = []
    failures = calls_in = calls_out = 0
    cost = 0.0
    nobody: list[int] = []
    #: each honest seat's last model call per move (round, phase or None, seat): what its
    #: message or action must say
    last: dict[tuple[Any, Any, int], dict[str, Any]] = {}
    moves: list[dict[str, Any]] = []
    # the record's seats and rounds (``record``): readers index a trial's rows by them, so
    # each must be an integer (not "1", 1.0 or true, which a reader fails on or takes for
    # 1) of the game's (a message from seat 7 of 3, or in round 0, lands in another row)
    said_played = end.get("rounds_played")
    played: int = said_played if type(said_played) is int else 0
    for e in events[1:-1]:
        kind = e.get("type")
        try:
            if kind == "message":
                failures += bool(e.get("parse_failed"))
                said_by = e["sender"]
                sender = said_by if type(said_by) is int else int(said_by)
                if sender in honest:
                    moves.append(e)
                # a message with no text (None, or a reply of blanks stripped to "") goes
                # to nobody: the engine sends only what it has to say
                heard = reach.get(sender, nobody) if e["text"] else nobody
                receivers = e["receivers"]
                if receivers != heard and sorted(int(x) for x in receivers) != heard:
                    problems.append(
                        f"round {e['round']}: P{sender + 1}'s message went to {receivers}, "
                        f"not along the recorded edges ({heard})"
                    )
                if record:
                    r = e.get("round")
                    if (
                        type(said_by) is not int
                        or type(r) is not int
                        or type(e.get("phase")) is not int
                        or not 0 <= sender < n
                        or not 1 <= r <= played
                    ):
                        record_problems.append(_misplaced(events, e, "sender", n, played))
            elif kind == "action":
                r, s = e["round"], e["seat"]
                if type(r) is not int or type(s) is not int:
                    if record:
                        record_problems.append(_misplaced(events, e, "seat", n, played))
                    r, s = int(r), int(s)
                mine = acts.get(r)
                if mine is None:
                    mine = acts[r] = {}
                elif s in mine:
                    problems.append(f"round {r}: seat {s} has two actions")
                name = e["action"]
                if name is not None and name != "stag" and name != "hare":
                    raise ValueError(f"not an action: {name!r}")
                mine[s] = name
                failures += bool(e.get("parse_failed"))
                if s in honest:
                    moves.append(e)
            elif kind == "model_call":
                call = e["call"]
                calls_in += int(call["input_tokens"])
                calls_out += int(call["output_tokens"])
                cost += float(call["cost_usd"])
                if record:
                    r, s = e.get("round"), e.get("seat")
                    if (
                        type(r) is not int
                        or type(s) is not int
                        or not (0 <= s < n and 1 <= r <= played)
                    ):
                        record_problems.append(_misplaced(events, e, "seat", n, played))
                    elif s in honest:
                        _note(record_problems, last, (r, e.get("phase"), s), call)
            elif kind == "round_end":
                round_ends.append(e)
            elif record:
                record_problems.append(f"an event of unknown type {kind!r}")
        except (KeyError, TypeError, ValueError) as exc:
            problems.append(f"a {kind} event cannot be read: {exc!r}")
    if last:
        record_problems += _against_calls(moves, last)
    needed = config.stag_needed
    totals = [0.0] * n
    for i, e in enumerate(round_ends, 1):
        said = e.get("round")
        if said != i:
            problems.append(f"round_end {i} says round {said}")
            continue
        mine = acts.get(i, {})
        if len(mine) != n or sorted(mine) != everyone:
            missing = sorted(set(everyone) - set(mine))
            problems.append(f"round {i}: no action recorded for seats {missing}")
            continue
        joint = tuple([mine[s] for s in everyone])
        want = _payoffs(game_json, joint)
        stags = joint.count("stag")
        recorded = list(joint)
        if recorded != e.get("actions"):
            problems.append(f"round {i}: round_end actions {e.get('actions')} differ from the "
                            f"actions recorded ({recorded})")  # fmt: skip
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
        if e.get("hunt_succeeded") != (stags >= needed):
            problems.append(f"round {i}: hunt_succeeded is wrong for {stags} stag hunters")
        totals = [t + w for t, w in zip(totals, want, strict=True)]
    if len(round_ends) > config.rounds:
        problems.append(f"{len(round_ends)} rounds played, the game has {config.rounds}")
    extra = sorted(set(acts) - set(range(1, len(round_ends) + 1)))
    if extra:
        problems.append(f"actions recorded for rounds {extra}, which never ended")
    got_totals = end.get("totals")
    if got_totals != totals and (
        not isinstance(got_totals, list)
        or len(got_totals) != n
        or not all(_close(g, w) for g, w in zip(got_totals, totals, strict=True))
    ):
        problems.append(f"totals {got_totals} are not the sum of the rounds' payoffs {totals}")
    if end.get("parse_failures") != failures:
        problems.append(f"parse_failures {end.get('parse_failures')}, the events show {failures}")
    if (end.get("input_tokens"), end.get("output_tokens")) != (calls_in, calls_out):
        problems.append("the token totals differ from the sum of the model calls")
    said_cost = end.get("cost_usd", 0.0)
    if said_cost != cost and not _close(said_cost, cost):
        problems.append("the cost total differs from the sum of the model calls")
    return problems + record_problems


def _misplaced(
    events: Sequence[dict[str, Any]], event: dict[str, Any], who: str, n: int, played: int
) -> str:
    """Why an event's seat (``who``), round or phase is not one a row of the game has,
    naming its line (looked for only now: a file without the problem pays nothing)."""
    line = next(i for i, e in enumerate(events, 1) if e is event)
    kind = event.get("type")
    where = f"line {line}: {kind}"
    for name in (who, "round", "phase") if kind != "action" else (who, "round"):
        value = event.get(name)
        none_allowed = name == "phase" and kind == "model_call"  # a call outside talk
        if type(value) is not int and not (none_allowed and value is None):
            return f"{where} {name} {value!r} is not an integer"
    seat: int = event[who]
    if not 0 <= seat < n:
        return f"{where} {who} {seat} is not a seat (0..{n - 1})"
    return f"{where} round {event['round']} is not a round played (1..{played})"


def consistent(events: list[dict[str, Any]], source: object) -> list[dict[str, Any]]:
    """``events`` when the audit finds nothing wrong with them, else a ``TranscriptError``
    naming ``source`` and its first problems: what every reader of transcripts (store,
    analysis, viewer, a Ray task's results) treats like corruption.

    Where an event is not its record at all (an action ``"STAG"``, a round ``"1"``, a
    field missing), the audit's problems are its consequences: the error is then the
    strict reader's, naming the line and the field. Only a file the audit refuses pays
    for that reading."""
    problems = audit_events(events)
    if problems:
        check_events(events, str(source))  # raises for an event that is not its record
        raise TranscriptError(f"{source} is inconsistent: {'; '.join(problems[:3])}")
    return events


def _roles(head: dict[str, Any]) -> tuple[set[int], list[str]]:
    """The header's honest seats, and where its seats disagree with its trial: as many
    seats are adversaries as the trial's adversary arm places (a role flipped in the
    header moves every honest rate); where the arm names its seats (``placement`` a list)
    those very seats, and where it places them by centrality (``hub``, ``leaf``,
    ``betweenness``) seats of the highest (lowest) score on the recorded edges, any of the
    tied ones (``random`` leaves any seats possible: an imported harness drew its own);
    each seat is honest or an adversary; and the seats are listed in seat order (as
    stagbench writes them: a reader that takes an entry's place for its seat must not be
    misled)."""
    try:
        seats = head["seats"]
        adv = head["trial"]["adversary"]
        listed = [int(s["seat"]) for s in seats]
        honest = {int(s["seat"]) for s in seats if s["role"] == "honest"}
        odd = [int(s["seat"]) for s in seats if s["role"] not in ("honest", "adversary")]
        placed = int(adv["count"]) if adv["kind"] != "none" else 0
        where = adv.get("placement")
        named = sorted(int(s) for s in where) if placed and isinstance(where, list) else None
        ranked = _RANKED.get(where) if placed and isinstance(where, str) else None
        edges = tuple((int(u), int(v)) for u, v in head["edges"]) if ranked else ()
        directed = bool(head["directed"]) if ranked else False
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return set(), [f"the header's seats cannot be read: {exc!r}"]
    problems = []
    if listed != sorted(listed):
        problems.append(f"the header lists its seats out of seat order: {listed}")
    problems += [f"seat {s}'s role is neither honest nor adversary" for s in odd]
    if len(seats) - len(honest) != placed:
        problems.append(
            f"{len(seats) - len(honest)} seats are adversaries, the trial's arm places {placed}"
        )
    adversaries = sorted(int(s["seat"]) for s in seats if s["role"] == "adversary")
    if named is not None and adversaries != named:
        problems.append(
            f"the adversaries are seats {adversaries}, the trial's arm places them at {named}"
        )
    if ranked is not None and adversaries and honest and listed == list(range(len(seats))):
        problems += _off_centre(str(where), ranked, adversaries, honest, edges, directed)
    return honest, problems


#: placements by a score of the graph (``adversaries.placement``): the score, and whether
#: the adversaries take the highest scores (else the lowest)
_RANKED: dict[str, tuple[str, bool]] = {
    "hub": ("reach", True),
    "leaf": ("reach", False),
    "betweenness": ("betweenness", True),
}


def _off_centre(
    where: str,
    ranked: tuple[str, bool],
    adversaries: list[int],
    honest: set[int],
    edges: tuple[tuple[int, int], ...],
    directed: bool,
) -> list[str]:
    """An adversary placed by centrality at a seat scoring less (more, for ``leaf``) than an
    honest seat: a role swapped in the header. Ties are drawn by the trial's seed, so any
    of the tied seats is where they may sit."""
    n = len(adversaries) + len(honest)  # the seats 0..n - 1 (checked by the caller)
    if any(not (0 <= u < n and 0 <= v < n) for u, v in edges):
        return []  # edges off the seats: said by the routing checks
    kind, highest = ranked
    score = _scores(kind, n, edges, directed)
    # the adversary placed worst, and the honest seat placed best
    if highest:
        a, h = min(adversaries, key=score.__getitem__), max(honest, key=score.__getitem__)
    else:
        a, h = max(adversaries, key=score.__getitem__), min(honest, key=score.__getitem__)
    if (score[a] < score[h] if highest else score[a] > score[h]) and not math.isclose(
        score[a], score[h], rel_tol=1e-9, abs_tol=1e-12
    ):
        return [
            f"the adversaries are seats {adversaries}, but placement {where!r} seats them "
            f"at the {'highest' if highest else 'lowest'} {kind}: adversary seat {a} has "
            f"{score[a]:.4g}, honest seat {h} {score[h]:.4g}"
        ]
    return []


@functools.lru_cache(maxsize=1024)
def _scores(
    kind: str, n: int, edges: tuple[tuple[int, int], ...], directed: bool
) -> tuple[float, ...]:
    """Each seat's score as ``adversaries.placement`` scores the graph, from the recorded
    (sender, receiver) pairs (an undirected edge is listed both ways): its reach (its
    degree; the out-degree of a directed graph), or its betweenness centrality."""
    if kind == "reach":
        out = [0.0] * n
        for u, _ in edges:
            out[u] += 1
        return tuple(out)
    import networkx as nx

    g: nx.Graph = nx.DiGraph() if directed else nx.Graph()
    g.add_nodes_from(range(n))
    g.add_edges_from(edges)
    between = nx.betweenness_centrality(g)
    return tuple(float(between[s]) for s in range(n))


def _against_calls(
    moves: list[dict[str, Any]], last: dict[tuple[Any, Any, int], dict[str, Any]]
) -> list[str]:
    """An honest seat's messages and actions that are not what its last model call for
    them parsed (an edited action, message or reasoning), and a message its talk call
    parsed that is not there (deleted). Only calls whose parse names the field are read
    (an imported harness's calls may name theirs otherwise)."""
    problems = []
    said: set[tuple[Any, Any, int]] = set()
    for e in moves:
        try:
            problems += _against_call(e, last)
            if e["type"] == "message":
                said.add((e["round"], e["phase"], int(e["sender"])))
        except (KeyError, TypeError, ValueError):  # unreadable: said by the checks above
            continue
    for (r, phase, seat), call in last.items():
        if phase is None or (r, phase, seat) in said or not call.get("parse_ok"):
            continue
        parsed = call.get("parsed")
        message = parsed.get("message") if isinstance(parsed, dict) else None
        if isinstance(message, str) and message.strip():  # it spoke: its message was deleted
            problems.append(f"round {r}: P{seat + 1}'s message is missing, its model call "
                            "parsed one")  # fmt: skip
    return problems


def _against_call(e: dict[str, Any], last: dict[tuple[Any, Any, int], dict[str, Any]]) -> list[str]:
    """``_against_calls`` of one move: a message (text) or an action (action, reasoning)
    against the parse of the seat's last call for it, when that call parsed."""
    talk = e["type"] == "message"
    seat = int(e["sender"] if talk else e["seat"])
    call = last.get((e["round"], e["phase"] if talk else None, seat))
    parsed = call.get("parsed") if call is not None and call.get("parse_ok") else None
    if not isinstance(parsed, dict):
        return []
    if talk:
        if not isinstance(parsed.get("message"), str):
            return []
        same = (e.get("text") or None) == (parsed["message"].strip() or None)
    else:
        if parsed.get("action") not in ("stag", "hare"):
            return []
        same = e.get("action") == parsed["action"] and e.get("reasoning") == parsed.get("reasoning")
    if same and not e.get("parse_failed"):
        return []
    what = "message" if talk else "action"
    return [f"round {e['round']}: P{seat + 1}'s {what} is not what its model call parsed"]


def _note(problems: list[str], into: dict[Any, Any], key: tuple[Any, ...], value: Any) -> None:
    """``value`` under ``key``; a key that cannot be one (a round that is a list) is a
    problem of the record."""
    try:
        into[key] = value
    except TypeError:
        problems.append(f"an event's round or phase cannot be read: {key[:2]!r}")
