"""``replay --check`` re-derives every LLM action from its recorded raw reply with the real
parser, re-runs scripted agents and scripted adversaries from the trial seed, and names
any difference; a transcript missing an event is a clear mismatch, never a traceback.

Each tampering below is made consistent (payoffs, stag counts and totals re-derived with
the engine), so the engine audit on read passes and only the re-execution can catch it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from stagbench.cli import app
from stagbench.games.audit import audit_events
from stagbench.games.stag_hunt import Action, payoffs
from stagbench.records import GameConfig, parse_transcript, read_events, read_transcript
from stagbench.runs.replay import check

GOLDEN = Path(__file__).parent / "golden" / "v2"
GOLDEN_LLM = Path(__file__).parent / "golden_llm" / "v2"
runner = CliRunner()
Events = list[dict[str, Any]]


def _retally(ev: Events) -> None:
    """Make round ends and totals agree with the (tampered) action events, as a careful
    forger would."""
    config = GameConfig.model_validate(ev[0]["trial"]["game"])
    n = config.n_players
    acts: dict[int, dict[int, str | None]] = {}
    for e in ev:
        if e["type"] == "action":
            acts.setdefault(e["round"], {})[e["seat"]] = e["action"]
    totals = [0.0] * n
    for e in ev:
        if e["type"] != "round_end":
            continue
        joint = [acts[e["round"]][s] for s in range(n)]
        pay = payoffs(config, [None if a is None else Action(a) for a in joint])
        stags = sum(a == "stag" for a in joint)
        e.update(actions=joint, payoffs=list(pay), stag_count=stags,
                 hunt_succeeded=stags >= config.stag_needed)  # fmt: skip
        totals = [t + p for t, p in zip(totals, pay, strict=True)]
    ev[-1]["totals"] = totals


def _text(ev: Events) -> str:
    return "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in ev)


def _seat_of(ev: Events, pred: Callable[[dict[str, Any]], bool]) -> int:
    return next(s["seat"] for s in ev[0]["seats"] if pred(s))


def _flip(ev: Events, seat: int, round_: int = 1) -> None:
    a = next(e for e in ev if e["type"] == "action" and e["seat"] == seat and e["round"] == round_)
    a["action"] = "hare" if a["action"] == "stag" else "stag"


def _scripted_honest(ev: Events) -> None:
    _flip(ev, _seat_of(ev, lambda s: s["role"] == "honest"))
    _retally(ev)


def _scripted_adversary(ev: Events) -> None:
    _flip(ev, _seat_of(ev, lambda s: s["role"] == "adversary"), round_=2)
    _retally(ev)


def _llm_action(ev: Events) -> None:
    _flip(ev, _seat_of(ev, lambda s: s["role"] == "honest"))
    _retally(ev)


def _llm_raw(ev: Events) -> None:
    call = next(e for e in ev if e["type"] == "model_call" and e["call"]["purpose"] == "act")
    raw = json.loads(call["call"]["raw"])
    raw["action"] = "hare" if raw["action"] == "stag" else "stag"
    call["call"]["raw"] = json.dumps(raw)


def _llm_message(ev: Events) -> None:
    m = next(e for e in ev if e["type"] == "message" and e["text"])
    m["text"] = m["text"] + " (and I mean it)"


CASES: dict[str, tuple[Path, Callable[[Events], None], str]] = {
    "scripted agent's action": (GOLDEN, _scripted_honest, "round 1"),
    "scripted adversary's action": (GOLDEN, _scripted_adversary, "round 2"),
    "LLM action against its reply": (GOLDEN_LLM, _llm_action, "round 1"),
    "LLM raw reply against its parse": (GOLDEN_LLM, _llm_raw, "parsed"),
    "LLM message against its reply": (GOLDEN_LLM, _llm_message, "round 1"),
}


#: forgeries whose move no longer says what the seat's own recorded model call parsed
AGAINST_ITS_CALL = ("LLM action against its reply", "LLM message against its reply")


@pytest.mark.parametrize("case", sorted(CASES))
def test_consistent_tampering_is_caught_by_re_execution(case: str, tmp_path: Path) -> None:
    folder, tamper, where = CASES[case]
    path = sorted(folder.glob("*.jsonl"))[0]
    events = read_events(path)
    tamper(events)
    found = audit_events(events)
    if case in AGAINST_ITS_CALL:  # the record contradicts itself: the audit finds it too
        assert any("is not what its model call parsed" in p for p in found), found
    else:
        assert found == [], "the forgery is consistent: only re-execution finds it"
    problems = check(parse_transcript(_text(events)))
    assert problems, case
    assert any(where in p for p in problems), problems
    bad = tmp_path / path.name
    bad.write_text(_text(events))
    res = runner.invoke(app, ["replay", str(bad), "--check"])
    assert res.exit_code == 1 and "mismatch" in res.output, res.output


@pytest.mark.parametrize("folder", [GOLDEN, GOLDEN_LLM])
def test_missing_event_is_a_clear_mismatch(folder: Path, tmp_path: Path) -> None:
    path = sorted(folder.glob("*.jsonl"))[0]
    events = read_events(path)
    gone = next(e for e in events if e["type"] == "action" and e["round"] == 2)
    events.remove(gone)
    bad = tmp_path / path.name
    bad.write_text(_text(events))
    problems = check(read_transcript(bad))
    who = f"P{gone['seat'] + 1}"
    assert any("missing" in p and "round 2" in p and who in p for p in problems), problems
    res = runner.invoke(app, ["replay", str(bad), "--check"])
    assert res.exit_code == 1 and "missing" in res.output, res.output
    assert "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_every_golden_transcript_re_executes() -> None:
    for path in sorted(GOLDEN.glob("*.jsonl")) + sorted(GOLDEN_LLM.glob("*.jsonl")):
        assert check(read_transcript(path)) == [], path.name


def test_showing_a_tampered_transcript_says_what_is_wrong_and_exits_1(tmp_path: Path) -> None:
    """`replay` without --check showed a transcript whose payoff was edited as if it were
    sound, exit 0 (redteam19b finding 15): it now lists what the analysis's audit finds
    after showing it and exits 1; a sound one shows as before, exit 0."""
    path = sorted(GOLDEN.glob("*.jsonl"))[0]
    clean = runner.invoke(app, ["replay", str(path)])
    assert clean.exit_code == 0 and "does not agree" not in clean.output, clean.output
    events = read_events(path)
    next(e for e in events if e["type"] == "round_end")["payoffs"][0] += 1.0
    bad = tmp_path / path.name
    bad.write_text(_text(events))
    res = runner.invoke(app, ["replay", str(bad)])
    assert res.exit_code == 1, res.output
    flat = " ".join(res.output.split())
    assert "does not agree with itself or the game" in flat
    assert "round 1: payoffs" in flat and "Round 1" in res.output  # shown, then the problems
