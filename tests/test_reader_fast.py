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
