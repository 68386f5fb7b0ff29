"""Tampered or inconsistent transcripts are found by re-deriving them with the engine."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stagbench.analysis.tables import agent_rounds
from stagbench.games.audit import audit_events
from stagbench.records import read_events
from stagbench.runs.orchestrator import run_trials
from stagbench.runs.spec import load_spec
from stagbench.runs.store import RunStore

GOLDEN = Path(__file__).parent / "golden"
Events = list[dict[str, Any]]


def _first(events: Events, kind: str) -> dict[str, Any]:
    return next(e for e in events if e["type"] == kind)


def _payoff_999(ev: Events) -> None:
    _first(ev, "round_end")["payoffs"][0] = 999.0


def _flip_action(ev: Events) -> None:
    a = _first(ev, "action")
    a["action"] = "hare" if a["action"] == "stag" else "stag"


def _totals_doubled(ev: Events) -> None:
    ev[-1]["totals"] = [2 * t for t in ev[-1]["totals"]]


def _drop_action(ev: Events) -> None:
    ev.remove(_first(ev, "action"))


def _stag_count(ev: Events) -> None:
    _first(ev, "round_end")["stag_count"] += 1


def _success_flag(ev: Events) -> None:
    e = _first(ev, "round_end")
    e["hunt_succeeded"] = not e["hunt_succeeded"]


def _rerouted(ev: Events) -> None:
    m = next(e for e in ev if e["type"] == "message" and e["text"])
    m["receivers"] = [m["sender"]]


TAMPERS: dict[str, Callable[[Events], None]] = {
    "payoff": _payoff_999,
    "action": _flip_action,
    "totals": _totals_doubled,
    "missing action": _drop_action,
    "stag count": _stag_count,
    "success flag": _success_flag,
    "rerouted message": _rerouted,
}


def test_every_golden_transcript_passes() -> None:
    files = sorted(GOLDEN.glob("*.jsonl")) + sorted((GOLDEN.parent / "golden_llm").glob("*.jsonl"))
    assert files and all(audit_events(read_events(p)) == [] for p in files)


@pytest.mark.parametrize("name", sorted(TAMPERS))
def test_each_tampering_is_found(name: str) -> None:
    events = read_events(sorted(GOLDEN.glob("*.jsonl"))[0])
    TAMPERS[name](events)
    assert audit_events(events), name


def _write(path: Path, events: Events) -> None:
    path.write_text("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events))


def test_tampered_files_are_left_out_of_analysis_and_rerun_on_resume(tmp_path: Path) -> None:
    spec, text = load_spec(GOLDEN / "golden.toml")
    store = RunStore(tmp_path / "run")
    store.open(spec, text, spec.trials())
    asyncio.run(run_trials(spec, spec.trials(), store))
    victim = store.transcript_paths()[0]
    clean = victim.read_bytes()
    events = read_events(victim)
    _payoff_999(events)
    _write(victim, events)
    df, load = agent_rounds(store.root, workers=1)
    assert [Path(f).name for f, _ in load.corrupt] == [victim.name]
    assert "payoffs" in load.corrupt[0][1] and victim.stem not in set(df["trial_id"].astype(str))
    summary = asyncio.run(run_trials(spec, spec.trials(), store))
    assert [name for name, _ in summary.corrupt] == [victim.name] and summary.completed == 1
    assert victim.read_bytes() == clean  # run again from its seed: the true transcript


GOLDEN_LLM = Path(__file__).parent / "golden_llm"


def _honest(ev: Events) -> dict[str, Any]:
    return next(s for s in ev[0]["seats"] if s["role"] == "honest")


def _role_only(ev: Events) -> None:
    _honest(ev)["role"] = "adversary"


def _role_and_label(ev: Events) -> None:
    _honest(ev).update(role="adversary", adversary="byzantine[1@random]")


def _bogus_event(ev: Events) -> None:
    ev.insert(2, {"type": "bogus", "round": 1})


def _llm_seat(ev: Events) -> int:
    honest = {s["seat"] for s in ev[0]["seats"] if s["role"] == "honest"}
    return next(e["seat"] for e in ev if e["type"] == "model_call" and e["seat"] in honest)


def _reasoning_edited(ev: Events) -> None:
    seat = _llm_seat(ev)
    a = next(e for e in ev if e["type"] == "action" and e["seat"] == seat and e["reasoning"])
    a["reasoning"] += " Also, P2 lied."


def _parse_edited(ev: Events) -> None:
    seat = _llm_seat(ev)
    call = next(
        e["call"] for e in ev
        if e["type"] == "model_call" and e["seat"] == seat and e["call"]["purpose"] == "talk"
        and e["call"]["parse_ok"]
    )  # fmt: skip
    call["parsed"]["message"] = "I will hunt hare."


def _message_deleted(ev: Events) -> None:
    seat = _llm_seat(ev)
    i = next(
        i for i, e in enumerate(ev)
        if e["type"] == "message" and e["sender"] == seat and e["text"]
    )  # fmt: skip
    del ev[i]


def _seats_out_of_order(ev: Events) -> None:
    seats = ev[0]["seats"]
    seats[0], seats[1] = seats[1], seats[0]


def _placed_where_they_are(ev: Events) -> None:
    """The arm names its seats (an explicit ``placement``): those the header says."""
    adversaries = [s["seat"] for s in ev[0]["seats"] if s["role"] == "adversary"]
    next(iter(adversaries))  # (StopIteration: a trial without adversaries)
    ev[0]["trial"]["adversary"]["placement"] = adversaries


def _roles_swapped_off_the_placement(ev: Events) -> None:
    """An adversary's and an honest seat's roles swapped: as many adversaries as before,
    but not at the seats the arm places them (redteam rt26 finding 6's role_swap)."""
    _placed_where_they_are(ev)
    seats = ev[0]["seats"]
    a = next(s for s in seats if s["role"] == "adversary")
    h = next(s for s in seats if s["role"] == "honest")
    for key in ("role", "adversary"):
        a[key], h[key] = h[key], a[key]


#: the record's own contradictions (redteam19b finding 7): the outcome re-derives, so only
#: these checks find them; each with the words it is found by
RECORD: dict[str, tuple[Path, Callable[[Events], None], str]] = {
    "role alone": (GOLDEN, _role_only, "the trial's arm places"),
    "role with a label": (GOLDEN, _role_and_label, "the trial's arm places"),
    "unknown event": (GOLDEN, _bogus_event, "unknown type 'bogus'"),
    "reasoning edited": (GOLDEN_LLM, _reasoning_edited, "action is not what its model call"),
    "parse edited": (GOLDEN_LLM, _parse_edited, "message is not what its model call"),
    "message deleted": (GOLDEN_LLM, _message_deleted, "message is missing, its model call"),
    # redteam rt26 finding 6: readers that take an entry's place for its seat are misled
    "seats out of order": (GOLDEN, _seats_out_of_order, "out of seat order: [1, 0,"),
    "roles off the placement": (GOLDEN, _roles_swapped_off_the_placement, "places them at"),
}


def test_an_arm_that_names_its_seats_passes_where_they_are() -> None:
    """The placement check finds only seats other than those named (no false alarm)."""
    tried = 0
    for path in sorted(GOLDEN.glob("*.jsonl")) + sorted(GOLDEN_LLM.glob("*.jsonl")):
        events = read_events(path)
        try:
            _placed_where_they_are(events)
        except StopIteration:
            continue
        tried += 1
        assert audit_events(events) == [], path.name
    assert tried


@pytest.mark.parametrize("case", sorted(RECORD))
def test_the_records_own_contradictions_are_found(case: str) -> None:
    """A header whose seats disagree with its adversary arm, an event of no known type, and
    an honest seat's move that is not what its own model call parsed: found (after the
    outcome's problems), on every golden transcript it applies to, never on the clean
    ones."""
    folder, tamper, words = RECORD[case]
    tried = 0
    for path in sorted(folder.glob("*.jsonl")):
        events = read_events(path)
        assert audit_events(events) == []
        try:
            tamper(events)
        except StopIteration:  # nothing of that kind in this transcript
            continue
        tried += 1
        found = audit_events(events)
        assert any(words in p for p in found), (path.name, found)
        assert audit_events(events, record=False) == [], "only the record's checks see it"
    assert tried


def test_a_message_of_blanks_is_a_valid_record(tmp_path: Path) -> None:
    """rt28: a talk reply ``{"message": " "}`` is recorded as text "" sent to nobody (the
    engine sends what it has to say), and the audit expected the graph's receivers for any
    text that is not None: every such transcript was "corrupt or tampered", left out of
    the report and re-run on every scan."""
    from typer.testing import CliRunner

    from stagbench.cli import app

    spec = tmp_path / "blank.toml"
    spec.write_text(
        'name = "blank"\nseed = 1\nrepetitions = 2\n[game]\nn_players = 3\nrounds = 2\n'
        '[factors]\nmodels = ["mock/blank"]\n[model_settings."mock/blank"]\n'
        """options = {replies = ['{"message": " ", "reasoning": "r", "action": "stag"}']}\n"""
    )
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["run", str(spec), "--out", str(out)])
    assert res.exit_code == 0, res.output
    for path in sorted((out / "transcripts").glob("*.jsonl")):
        events = read_events(path)
        said = [e for e in events if e["type"] == "message"]
        assert said and all(e["text"] == "" and e["receivers"] == [] for e in said)
        assert audit_events(events) == []
    res = CliRunner().invoke(app, ["report", str(out)])
    assert res.exit_code == 0 and "corrupt" not in res.output, res.output
