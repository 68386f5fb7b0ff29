"""A transcript left out as corrupt is listed with a reason naming the file, the line and
the field, never a bare Python error (hard20 3): the analysis fast path read a round
``"1"`` as ``unsupported operand type(s) for -: 'str' and 'int'``, a seat ``1.0`` as
``list indices must be integers or slices, not float``, and an action ``"STAG"`` as "a
action event cannot be read"."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from stagbench.analysis.tables import agent_rounds
from stagbench.cli import app

from analysis_helpers import run_spec

runner = CliRunner()

SPEC = """
name = "reasons"
repetitions = 3
[game]
n_players = 3
rounds = 2
[factors]
models = ["mock/stag"]
"""

DELETE = object()

#: (event type, field (a dotted path into the event), new value, the field as named)
MUTATIONS: dict[str, tuple[str, str, Any, str]] = {
    "a round that is text": ("action", "round", "1", "action.round"),
    "a seat that is a float": ("action", "seat", 1.0, "action.seat"),
    "an upper-case action": ("action", "action", "STAG", "action.action"),
    "a seat left out": ("action", "seat", DELETE, "action.seat"),
    "a message round that is text": ("message", "round", "1", "message.round"),
    "a sender that is a float": ("message", "sender", 1.0, "message.sender"),
    "a round_end round that is text": ("round_end", "round", "1", "round_end.round"),
    "a model call seat that is a float": ("model_call", "seat", 0.0, "model_call.seat"),
    "a token count that is text": (
        "model_call", "call.input_tokens", "7", "model_call.call.input_tokens",
    ),
    # these the fast path analysed as if nothing were wrong (true as round 1)
    "a round that is true": ("action", "round", True, "action.round"),
    "a phase that is text": ("message", "phase", "0", "message.phase"),
    "a model call round that is true": ("model_call", "round", True, "model_call.round"),
}  # fmt: skip

#: well-typed seats and rounds that are not the game's: the fast path filed the message
#: or call under another player's (or round's) row, or failed with a bare IndexError
OUT_OF_RANGE: dict[str, tuple[str, str, Any, str]] = {
    "a sender past the last seat": ("message", "sender", 7, "message sender 7 is not a seat (0..2)"),
    "a negative sender": ("message", "sender", -1, "message sender -1 is not a seat (0..2)"),
    "a message in round 0": ("message", "round", 0, "message round 0 is not a round played (1..2)"),
    "a message after the last round": (
        "message", "round", 9, "message round 9 is not a round played (1..2)",
    ),
    "a model call of seat 5": ("model_call", "seat", 5, "model_call seat 5 is not a seat (0..2)"),
    "a model call in round 3": (
        "model_call", "round", 3, "model_call round 3 is not a round played (1..2)",
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_spec(SPEC, tmp_path_factory.mktemp("clean") / "run", llm=True)


def _damage(run: Path, out: Path, case: str) -> tuple[Path, int]:
    """A copy of ``run`` whose first transcript has ``case`` done to its first event of
    the kind; that file and the event's line."""
    kind, field, value, _ = MUTATIONS.get(case) or OUT_OF_RANGE[case]
    shutil.copytree(run, out)
    path = sorted((out / "transcripts").glob("*.jsonl"))[0]
    lines = path.read_text().splitlines()
    no = next(i for i, line in enumerate(lines, 1) if json.loads(line)["type"] == kind)
    event = json.loads(lines[no - 1])
    *parents, last = field.split(".")
    where = event
    for key in parents:
        where = where[key]
    if value is DELETE:
        del where[last]
    else:
        where[last] = value
    lines[no - 1] = json.dumps(event)
    path.write_text("\n".join(lines) + "\n")
    return path, no


def _check(why: str, path: Path, no: int, field: str) -> None:
    assert why.startswith(f"{path} line {no} is not a valid event: {field}: "), why
    for bare in ("unsupported operand", "list indices", "cannot be read:", "Error("):
        assert bare not in why, why


@pytest.mark.parametrize("case", sorted(MUTATIONS))
def test_the_reason_names_the_file_the_line_and_the_field(
    case: str, clean_run: Path, tmp_path: Path
) -> None:
    path, no = _damage(clean_run, tmp_path / "run", case)
    field = MUTATIONS[case][3]
    for strict in (False, True):  # the fast path, and the strict one refuses it alike
        df, load = agent_rounds(tmp_path / "run", strict=strict, workers=1)
        assert [p for p, _ in load.corrupt] == [str(path)], load.corrupt
        _check(load.corrupt[0][1], path, no, field)
        assert len(df) == 2 * 2 * 3  # the two other trials, whole
    res = runner.invoke(app, ["tables", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    said = " ".join(res.output.split())
    assert f"not analysed (corrupt): {path}: {path} line {no} is not a valid event: {field}: " in (
        said
    ), res.output
    res = runner.invoke(app, ["report", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "run" / "report" / "report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| corrupt or tampered"))
    assert f"| {path.name} | {path} line {no} is not a valid event: {field}: " in row, row


@pytest.mark.parametrize("case", sorted(OUT_OF_RANGE))
def test_a_seat_or_round_out_of_range_is_named_with_its_line(
    case: str, clean_run: Path, tmp_path: Path
) -> None:
    path, no = _damage(clean_run, tmp_path / "run", case)
    for strict in (False, True):
        df, load = agent_rounds(tmp_path / "run", strict=strict, workers=1)
        assert [p for p, _ in load.corrupt] == [str(path)], load.corrupt
        why = load.corrupt[0][1]
        # listed after what follows from it (a message from seat 7 goes along no edge)
        assert why.startswith(f"{path} is inconsistent: "), why
        assert f"line {no}: {OUT_OF_RANGE[case][3]}" in why, why
        assert len(df) == 2 * 2 * 3


def test_a_good_run_lists_nothing(clean_run: Path) -> None:
    df, load = agent_rounds(clean_run, workers=1)
    assert not load.corrupt and len(df) == 3 * 2 * 3
