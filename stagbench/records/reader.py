"""The one reader of transcripts and manifests, used by the store, replay, the replay
provider and analysis alike.

- ``load_events`` is the fast path: JSON lines into plain dicts with the structural checks
  (a header first, a ``trial_end`` last and nowhere else, the round count agreeing), for
  analysis over many thousands of files.
- ``parse_transcript`` / ``read_transcript`` are the strict path: the same checks, then
  every event validated into its pydantic record (``strict=True``, or ``check_events``
  alone: each event read as JSON strictly, as the header always is: a round that is text,
  a seat that is ``1.0`` or a boolean where a number goes is refused, not converted).

Both run older format versions through ``migrate`` first, so a file written by an earlier
stagbench is read, not rejected; a file of a newer version than this stagbench knows is a
clear ``TranscriptError``.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import orjson
from pydantic import TypeAdapter, ValidationError, create_model

from stagbench.errors import StoreError, TranscriptError
from stagbench.records.events import (
    TRANSCRIPT_FORMAT,
    TRANSCRIPT_VERSION,
    BodyEvent,
    Event,
    Header,
    Transcript,
    TrialEndEvent,
)
from stagbench.records.manifest import MANIFEST_FORMAT, MANIFEST_VERSION, Manifest
from stagbench.records.trial import TrialSpec

_EVENT: TypeAdapter[Any] = TypeAdapter(Event)

Events = list[dict[str, Any]]


# -- migration -----------------------------------------------------------------------
def _transcript_v1_to_v2(events: Events) -> Events:
    """v2 stores a seat's system prompt once, in its ``SeatInfo``, instead of in every call.
    A seat whose calls did not all share one system prompt keeps them inline."""
    header = events[0]
    prompts: dict[int, set[str | None]] = {}
    for e in events:
        if e.get("type") == "model_call":
            messages = e["call"]["messages"]
            first = messages[0] if messages else None
            system = first["content"] if first and first.get("role") == "system" else None
            prompts.setdefault(e["seat"], set()).add(system)
    lifted = {
        seat: next(iter(found))
        for seat, found in prompts.items()
        if len(found) == 1 and None not in found
    }
    for info in header["seats"]:
        if info["seat"] in lifted:
            info["system"] = lifted[info["seat"]]
    for e in events:
        if e.get("type") == "model_call" and e["seat"] in lifted:
            e["call"]["messages"] = e["call"]["messages"][1:]
    header["version"] = 2
    return events


#: from version k to version k + 1, on the parsed JSON of a whole transcript
TRANSCRIPT_MIGRATIONS: dict[int, Callable[[Events], Events]] = {1: _transcript_v1_to_v2}


def migrate(events: Events, source: str = "<transcript>") -> Events:
    """Bring a transcript's parsed events up to ``TRANSCRIPT_VERSION``, one step at a time."""
    if not events or events[0].get("type") != "header":
        raise TranscriptError(f"{source} does not start with a header")
    head = events[0]
    version = head.get("version")
    if head.get("format") != TRANSCRIPT_FORMAT or not isinstance(version, int):
        raise TranscriptError(
            f"{source} is not a stagbench transcript (format {head.get('format')!r})"
        )
    if version > TRANSCRIPT_VERSION:
        raise TranscriptError(
            f"{source} is {TRANSCRIPT_FORMAT} v{version}; this stagbench reads up to "
            f"v{TRANSCRIPT_VERSION}: upgrade stagbench to read it"
        )
    while version < TRANSCRIPT_VERSION:
        step = TRANSCRIPT_MIGRATIONS.get(version)
        if step is None:
            raise TranscriptError(f"{source} is v{version}, which no migration reads")
        try:
            events = step(events)
        except (KeyError, TypeError, IndexError, AttributeError) as exc:
            raise TranscriptError(f"{source} cannot be migrated from v{version}: {exc!r}") from exc
        version += 1
    return events


# -- transcripts ---------------------------------------------------------------------
def _check_structure(events: Events, source: str) -> None:
    end = events[-1]
    if end.get("type") != "trial_end":
        raise TranscriptError(f"{source} is truncated: it has no trial_end event")
    kinds = [e.get("type") for e in events[1:-1]]
    for kind in ("header", "trial_end"):
        if kind in kinds:  # the first of either, as a loop over the events finds it
            first = min(i for i in (_index(kinds, "header"), _index(kinds, "trial_end")) if i >= 0)
            raise TranscriptError(f"{source} has a {kinds[first]} event in the middle")
    rounds = kinds.count("round_end")
    if rounds != end.get("rounds_played"):
        raise TranscriptError(
            f"{source} records {rounds} rounds but its end says {end.get('rounds_played')}"
        )


def _index(items: list[Any], value: str) -> int:
    try:
        return items.index(value)
    except ValueError:
        return -1


def load_events(data: bytes | str, source: str = "<transcript>") -> Events:
    """Fast path: the transcript's events as dicts, migrated and structurally checked."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    events = None
    body = raw.strip()
    if b"\r" not in body:  # one parse for the whole file, its lines joined by commas
        # (a blank line in the middle makes ",," and is parsed as below; a lone \r would
        # end a line there and not here)
        try:
            events = orjson.loads(b"[" + body.replace(b"\n", b",") + b"]")
        except orjson.JSONDecodeError:
            events = None
    if events is None:
        lines = [line for line in raw.splitlines() if line.strip()]
        try:  # the line-by-line loop below only names a bad line
            events = orjson.loads(b"[" + b",".join(lines) + b"]")
        except orjson.JSONDecodeError:
            events = None
    if events is None or not all(type(e) is dict for e in events):
        events = _line_by_line(raw, source)
    if not events:
        raise TranscriptError(f"{source} is empty")
    events = migrate(events, source)
    _check_structure(events, source)
    check_header(events[0], source)
    return events


_HEADER = Header.__pydantic_validator__
#: the fields in which the headers of one design's trials differ from trial to trial
TRIAL_IDS = ("trial_id", "seed", "repetition")
#: those fields of ``TrialSpec`` alone, as it declares them
_ID_FIELDS: dict[str, Any] = {k: (f.annotation, f) for k, f in TrialSpec.model_fields.items()}
_ID_CHECK = create_model("TrialIds", **{k: _ID_FIELDS[k] for k in TRIAL_IDS}).__pydantic_validator__
#: digests of headers found valid, their ids left out (``check_header``), at most _SEEN_MAX
_SEEN: set[bytes] = set()
_SEEN_MAX = 4096


def check_header(header: dict[str, Any], source: str, sans: bytes | None = None) -> None:
    """The header against its record, strictly (as JSON: a trial id that is a number, or a
    player count that is text, is a damaged header, not something to analyse): readers
    take its fields as they are, so a wrong type would break them far from here.

    The trials of a design have headers alike but for their ids (``TRIAL_IDS``): once a
    header is found valid, another that is the same but for them needs only them checked
    (no check on a header reads one field against another of those), a tenth of the time.
    Headers are told alike by a 16-byte BLAKE2 digest of their JSON without the ids
    (``header_sans_ids``; ``sans``: that JSON, when made already)."""
    text = header_sans_ids(header) if sans is None else sans
    seen = None if text is None else hashlib.blake2b(text, digest_size=16).digest()
    try:
        if seen is not None and seen in _SEEN:
            trial = header["trial"]
            ids = orjson.dumps({k: trial[k] for k in TRIAL_IDS})
            try:
                _ID_CHECK.validate_json(ids, strict=True)
            except ValidationError as exc:
                _malformed(exc, source, ("trial",))
            return
        _HEADER.validate_json(orjson.dumps(header), strict=True)
    except ValidationError as exc:
        _malformed(exc, source)
    except orjson.JSONEncodeError as exc:
        raise TranscriptError(f"{source} has a malformed header: {exc}") from None
    if seen is not None:
        if len(_SEEN) >= _SEEN_MAX:
            _SEEN.clear()
        _SEEN.add(seen)


def header_sans_ids(header: Any) -> bytes | None:
    """The header's JSON without its trial's ids (``TRIAL_IDS``): what the headers of
    one design's trials share. ``None`` for a header that does not hold them all in a
    ``trial`` object, or that JSON cannot hold."""
    trial = header.get("trial") if type(header) is dict else None
    if type(trial) is not dict or not all(k in trial for k in TRIAL_IDS):
        return None
    sans = {k: v for k, v in trial.items() if k not in TRIAL_IDS}
    try:
        return orjson.dumps({**header, "trial": sans})
    except orjson.JSONEncodeError:
        return None


def _malformed(exc: ValidationError, source: str, within: tuple[str, ...] = ()) -> NoReturn:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in (*within, *err["loc"]))
    raise TranscriptError(f"{source} has a malformed header: {where}: {err['msg']}") from None


def _line_by_line(raw: bytes, source: str) -> Events:
    """Parse line by line, to say which line is not a JSON object."""
    events = []
    for no, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise TranscriptError(f"{source} line {no} is not valid JSON: {exc}") from exc
        if not isinstance(event, dict):
            raise TranscriptError(f"{source} line {no} is not a JSON object")
        events.append(event)
    return events


def parse_transcript(
    data: bytes | str, source: str = "<transcript>", *, strict: bool = False
) -> Transcript:
    """Strict path: every event validated into its record; anything wrong is a
    ``TranscriptError`` naming the file and line (``strict``: see ``check_events``)."""
    return validate_events(load_events(data, source), source, strict=strict)


def validate_events(
    events: Events, source: str = "<transcript>", *, strict: bool = False
) -> Transcript:
    """The fast path's events (migrated, structurally checked) as validated records
    (``strict``: see ``check_events``)."""
    header, *body = _parse_events(events, source, strict)
    end = body.pop()
    assert isinstance(header, Header) and isinstance(end, TrialEndEvent)
    middle: list[BodyEvent] = body
    return Transcript(header=header, events=middle, end=end)


def check_events(events: Events, source: str = "<transcript>") -> None:
    """Raise the ``TranscriptError`` of the first event that is not its record, each read
    as its JSON, strictly, as ``check_header`` reads the header: a value of the wrong JSON
    type (a round ``"1"``, a seat ``1.0``, ``true`` for a number, an action ``"STAG"``) is
    an error naming its line and field, not converted. It costs about half as much again as
    the lax validation; the fast path's readers use it to say exactly why a file they could
    not read is broken (only such files pay for it), and ``strict`` reading uses it."""
    _parse_events(events, source, True)


def _parse_events(events: Events, source: str, strict: bool) -> list[Any]:
    parsed = []
    for no, e in enumerate(events, 1):
        try:
            if strict:
                parsed.append(_EVENT.validate_json(orjson.dumps(e), strict=True))
            else:
                parsed.append(_EVENT.validate_python(e))
        except orjson.JSONEncodeError as exc:
            raise TranscriptError(f"{source} line {no} is not a valid event: {exc}") from None
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise TranscriptError(
                f"{source} line {no} is not a valid event: {where}: {err['msg']}"
            ) from exc
    return parsed


def file_identity(st: os.stat_result) -> str:
    """What a file's bytes cannot change without changing: its size, inode, and
    modification and status-change times in ns (the kernel sets the status-change time on
    every write, rename and touch of the modification time, and it cannot be set back).
    The run store vouches for checked transcripts by it, the analysis cache keys on it."""
    return f"{st.st_size} {st.st_ino} {st.st_mtime_ns} {st.st_ctime_ns}"


def read_file(path: Path) -> bytes:
    """A transcript file's bytes; never blocks on one that is not a regular file (a FIFO,
    a socket, a device: opened without waiting for a writer, then refused)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # not even opened
            raise _not_regular(path)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError as exc:
        raise TranscriptError(f"transcript not found: {path}") from exc
    except OSError as exc:
        raise TranscriptError(f"cannot read transcript {path}: {exc}") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced since it was statted
            raise _not_regular(path)
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    except OSError as exc:
        raise TranscriptError(f"cannot read transcript {path}: {exc}") from exc
    finally:
        os.close(fd)


def _not_regular(path: Path) -> TranscriptError:
    return TranscriptError(
        f"{path} is not a regular file (a FIFO, socket, device or folder): not read"
    )


def read_transcript(path: str | Path) -> Transcript:
    """A transcript file, strictly validated (older versions migrated)."""
    p = Path(path)
    return parse_transcript(read_file(p), str(p))


def read_events(path: str | Path) -> Events:
    """A transcript file's events as dicts (the fast path), migrated and checked."""
    p = Path(path)
    return load_events(read_file(p), str(p))


# -- manifests -----------------------------------------------------------------------
def migrate_manifest(data: dict[str, Any], source: str = "manifest.json") -> dict[str, Any]:
    """v0 (before manifests had a version) to v1: the same fields, now named and typed."""
    if "format" not in data:
        data = {k: v for k, v in data.items() if k in Manifest.model_fields}
        data.update(format=MANIFEST_FORMAT, version=1)
        data.setdefault("created", data.get("updated") or "")
        if data.get("status") not in (None, "new", "running", "complete", "incomplete"):
            data["status"] = "incomplete"
    if data.get("format") != MANIFEST_FORMAT:
        raise StoreError(f"{source} is not a stagbench manifest (format {data.get('format')!r})")
    version = data.get("version")
    if not isinstance(version, int) or version > MANIFEST_VERSION:
        raise StoreError(
            f"{source} is manifest v{version}; this stagbench reads up to v{MANIFEST_VERSION}"
        )
    return data


def parse_manifest(text: str | bytes, source: str = "manifest.json") -> Manifest:
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise StoreError(f"cannot read {source}: {exc}") from exc
    if not isinstance(data, dict):
        raise StoreError(f"{source} is not a JSON object")
    try:
        return Manifest.model_validate(migrate_manifest(data, source))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise StoreError(f"{source} is not a valid manifest: {where}: {err['msg']}") from exc


def read_manifest(path: str | Path) -> Manifest | None:
    """A results folder's manifest, or None when there is none."""
    p = Path(path)
    try:
        text = p.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"cannot read {p}: {exc}") from exc
    return parse_manifest(text, str(p))
