"""The fast audit finds exactly what the audit before it found: the same problems, in the
same words, on the golden transcripts and on thousands of mutated copies of them (changed
payoffs, stag counts, totals, routing, token totals, actions; fields of the wrong type,
missing, duplicated or reordered events)."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import audit_reference
import orjson
import pytest

from stagbench.games.audit import audit_events
from stagbench.records import read_events

ROOT = Path(__file__).parent
FILES = sorted((ROOT / "golden").glob("*.jsonl")) + sorted((ROOT / "golden_llm").glob("*.jsonl"))
Events = list[dict[str, Any]]

#: values a mutated field may take: near misses, other types, nothing at all
ODD: list[Any] = [None, 0, 1, -1, 2, 3.0, 0.0, 1e-7, 99.0, True, False, "stag", "hare", "x",
                  "1", [], [0], [1, 0], [0, 1, 2, 3], {}, {"a": 1}, float("inf")]  # fmt: skip


def _outcomes(events: Events) -> list[str]:
    """The audit of the outcome alone (what the reference checks)."""
    return audit_events(events, record=False)


def _outcome(audit: Any, events: Events) -> tuple[str, Any]:
    try:
        return "problems", audit(events)  # neither changes the events
    except Exception as exc:  # noqa: BLE001 (both must fail alike)
        return "raises", type(exc).__name__


def _mutate(events: Events, rng: random.Random) -> None:
    """One random change: a field of an event (top level or one level down) set to an odd
    value, near the old one, or removed; or an event removed, duplicated or moved."""
    roll = rng.random()
    if roll < 0.1 and len(events) > 2:
        i = rng.randrange(1, len(events) - 1)
        what = rng.choice(("drop", "dup", "move"))
        if what == "drop":
            events.pop(i)
        elif what == "dup":
            events.insert(i, copy.deepcopy(events[i]))
        else:
            events.insert(rng.randrange(1, len(events) - 1), events.pop(i))
        return
    event = rng.choice(events)
    target: Any = event
    inner = [k for k, v in event.items() if isinstance(v, dict | list) and v]
    if inner and rng.random() < 0.5:
        target = event[rng.choice(inner)]
        if isinstance(target, dict) and "game" in target and rng.random() < 0.5:
            target = target["game"]
    if isinstance(target, list):
        i = rng.randrange(len(target))
        old = target[i]
        choice = rng.random()
        if choice < 0.3 and isinstance(old, int | float) and not isinstance(old, bool):
            target[i] = old + rng.choice((1, -1, 0.5, 1e-9, 1e-3))
        elif choice < 0.4:
            target.pop(i)
        else:
            target[i] = rng.choice(ODD)
        return
    key = rng.choice(list(target))
    old = target[key]
    choice = rng.random()
    if choice < 0.1:
        del target[key]
    elif choice < 0.4 and isinstance(old, int | float) and not isinstance(old, bool):
        target[key] = old + rng.choice((1, -1, 0.5, 1e-9, 1e-3))
    elif choice < 0.5 and isinstance(old, list) and old:
        rng.shuffle(old)
    else:
        target[key] = rng.choice(ODD)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_same_verdict_as_the_reference_on_mutated_copies(path: Path) -> None:
    clean = read_events(path)
    assert audit_events(clean) == audit_reference.audit_events(clean) == []
    assert audit_events(clean, record=False) == []
    data = orjson.dumps(clean)
    rng = random.Random(path.name)
    found = 0
    for _ in range(400):
        events = orjson.loads(data)
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            _mutate(events, rng)
        new, old = _outcome(_outcomes, events), _outcome(audit_reference.audit_events, events)
        assert new == old, (events, new, old)
        whole = _outcome(audit_events, events)  # the record's own checks listed after
        assert whole[0] == old[0] and (old[0] == "raises" or whole[1][: len(old[1])] == old[1])
        found += new[0] == "problems" and bool(new[1])
    assert found > 150  # the mutations do reach the checks


def test_same_verdict_on_the_named_tamperings() -> None:
    """The tamperings the analysis tests plant, each alone: found, in the same words."""
    from test_audit import TAMPERS

    def tokens(ev: Events) -> None:
        ev[-1]["input_tokens"] += 1

    def cost(ev: Events) -> None:
        ev[-1]["cost_usd"] += 0.5

    def parse(ev: Events) -> None:
        ev[-1]["parse_failures"] += 1

    def odd_action(ev: Events) -> None:
        next(e for e in ev if e["type"] == "action")["action"] = ["stag"]

    cases = {**TAMPERS, "tokens": tokens, "cost": cost, "parse failures": parse,
             "odd action": odd_action}  # fmt: skip
    for path in FILES:
        for name, tamper in cases.items():
            events = read_events(path)
            tamper(events)
            new = audit_events(events, record=False)
            assert new, (path.name, name)
            assert new == audit_reference.audit_events(events), (path.name, name)
            assert audit_events(events)[: len(new)] == new
