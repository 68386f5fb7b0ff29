"""The reader's one-parse fast path reads exactly what the line-by-line join before it read:
the same events, or the same error, for files with blank lines, CRLF or lone CR line ends,
whitespace-only lines, an event split over two lines, a bad line, a truncated end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from stagbench.errors import TranscriptError
from stagbench.records import load_events
from stagbench.records.reader import _check_structure, _line_by_line, migrate

GOLDEN = Path(__file__).parent / "golden"


def reference(data: bytes, source: str = "<transcript>") -> list[dict[str, Any]]:
    """``load_events`` as it was before the fast path (commit 6528958)."""
    lines = [line for line in data.splitlines() if line.strip()]
    try:
        events = orjson.loads(b"[" + b",".join(lines) + b"]")
    except orjson.JSONDecodeError:
        events = None
    if events is None or not all(type(e) is dict for e in events):
        events = _line_by_line(data, source)
    if not events:
        raise TranscriptError(f"{source} is empty")
    events = migrate(events, source)
    _check_structure(events, source)
    return events


def _variants(clean: bytes) -> dict[str, bytes]:
    lines = clean.splitlines()
    split = lines[1].replace(b'","', b'",\n"', 1)  # one event over two lines
    return {
        "clean": clean,
        "no final newline": clean.rstrip(b"\n"),
        "blank lines": clean.replace(b"\n", b"\n\n", 3),
        "blank at both ends": b"\n\n" + clean + b"\n\n\n",
        "whitespace lines": clean.replace(b"\n", b"\n  \t \n", 2),
        "vertical tab line": clean.replace(b"\n", b"\n\x0b\n", 1),
        "crlf": clean.replace(b"\n", b"\r\n"),
        "lone cr": clean.replace(b"\n", b"\r"),
        "one lone cr": clean.replace(b"\n", b"\r", 1),
        "cr inside an event": clean.replace(b'":', b'":\r', 1),
        "event over two lines": b"\n".join([lines[0], split, *lines[2:]]),
        "indented": b"\n".join(b"  " + line for line in lines),
        "bad line": b"\n".join([*lines[:3], b"{not json", *lines[3:]]),
        "a list line": b"\n".join([*lines[:3], b"[1, 2]", *lines[3:]]),
        "truncated": clean[: len(clean) // 2],
        "no end": b"\n".join(lines[:-1]),
        "two ends": b"\n".join([*lines, lines[-1]]),
        "header twice": b"\n".join([lines[0], *lines]),
        "empty": b"",
        "only blanks": b"\n \n\n",
        "nbsp line": clean.replace(b"\n", b"\n\xc2\xa0\n", 1),
    }


def _outcome(read: Any, data: bytes) -> tuple[str, Any]:
    try:
        return "events", read(data, "f.jsonl")
    except TranscriptError as exc:
        return "error", str(exc)


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.jsonl"))[:2], ids=lambda p: p.name)
def test_fast_path_reads_what_the_line_join_read(path: Path) -> None:
    for name, data in _variants(path.read_bytes()).items():
        new, old = _outcome(load_events, data), _outcome(reference, data)
        assert new == old, name
        if name in ("clean", "crlf", "blank lines", "indented", "lone cr"):
            assert new[0] == "events", name
        if name in ("truncated", "bad line", "event over two lines", "empty", "two ends"):
            assert new[0] == "error", name


def test_a_header_of_the_wrong_types_is_a_clear_error(tmp_path: Path) -> None:
    """A trial id that is a number (or a player count that is text) passed the fast path
    and crashed `stagbench tables` with an Arrow traceback when the cached view was
    written; the header is now checked against its record, strictly, and the file is
    listed as corrupt while the others are analysed."""
    from typer.testing import CliRunner

    from stagbench.cli import app

    files = sorted(GOLDEN.glob("*.jsonl"))
    clean = files[0].read_bytes()
    load_events(clean)  # a sound file passes
    header, rest = clean.split(b"\n", 1)
    head = orjson.loads(header)
    for path, value in ((("trial", "trial_id"), 12345), (("trial", "game", "n_players"), "4"),
                        (("spec_name",), None)):  # fmt: skip
        bad = orjson.loads(header)
        node = bad
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        with pytest.raises(TranscriptError, match="malformed header: " + r"\.".join(path)):
            load_events(orjson.dumps(bad) + b"\n" + rest)
    # the whole command: the damaged file listed, the others analysed, no traceback
    run = tmp_path / "run" / "transcripts"
    run.mkdir(parents=True)
    for f in files:
        (run / f.name).write_bytes(f.read_bytes())
    head["trial"]["trial_id"] = 12345
    (run / files[0].name).write_bytes(orjson.dumps(head) + b"\n" + rest)
    res = CliRunner().invoke(app, ["tables", str(tmp_path / "run")])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert "malformed header: trial.trial_id" in res.output
    assert f"from {len(files) - 1} transcripts" in res.output


def _whole(header: dict[str, Any]) -> str | None:
    """``check_header`` as it was: the whole header validated every time."""
    from pydantic import ValidationError

    from stagbench.records.reader import _HEADER

    try:
        _HEADER.validate_json(orjson.dumps(header), strict=True)
    except ValidationError as exc:
        err = exc.errors()[0]
        return f"f has a malformed header: {'.'.join(map(str, err['loc']))}: {err['msg']}"
    except orjson.JSONEncodeError as exc:
        return f"f has a malformed header: {exc}"
    return None


@pytest.mark.parametrize("seen", [False, True], ids=["first", "after an alike header"])
@pytest.mark.parametrize(
    ("key", "value"),
    [
        (("trial", "trial_id"), "another"),  # valid: only the ids differ
        (("trial", "seed"), 7),
        (("trial", "trial_id"), 5),
        (("trial", "seed"), "7"),
        (("trial", "seed"), 7.0),
        (("trial", "seed"), True),
        (("trial", "seed"), 2**70),  # too large for JSON's integers
        (("trial", "repetition"), None),
        (("trial", "repetition"), [1]),
        (("trial", "game", "n_players"), "4"),  # not an id: the whole header is checked
        (("trial", "condition"), 3),
        (("seats",), "none"),
        (("trial",), {"trial_id": "x", "seed": 1}),  # no repetition: checked whole
    ],
)
def test_alike_headers_are_checked_as_a_whole_check_would(
    key: tuple[str, ...], value: Any, seen: bool
) -> None:
    """A header alike but for its ids to one found valid has only its ids checked; the
    outcome, error message included, is the whole check's, for headers that differ in
    their ids, in anything else, or in their shape."""
    from stagbench.records import reader

    head = orjson.loads(sorted(GOLDEN.glob("*.jsonl"))[0].read_bytes().split(b"\n", 1)[0])
    reader._SEEN.clear()
    if seen:
        reader.check_header(head, "f")
        assert reader._SEEN
    bad = orjson.loads(orjson.dumps(head))
    node = bad
    for k in key[:-1]:
        node = node[k]
    node[key[-1]] = value
    try:
        reader.check_header(bad, "f")
        got = None
    except TranscriptError as exc:
        got = str(exc)
    assert got == _whole(bad)
    valid = {("trial", "trial_id"): "another", ("trial", "seed"): 7}
    assert (got is None) == (key in valid and repr(valid[key]) == repr(value))
