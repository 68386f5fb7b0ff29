"""One pass over a run's transcripts for every analysis, in worker processes, cached.

A report needs three views of the same files: the agent-round table (``tables``), one row
per honest agent per trial (``metrics.agent_trials``) and the injection module's rows and
messages (``injection``). Reading 100,000 transcripts is most of a report's time, so each
file is read, migrated and audited ONCE, in chunks of ``CHUNK`` files spread over
``workers`` processes, and every view is built from the chunk while its events are in
memory. A chunk holds whole trials, so per-trial views (agent-trials) are exact per chunk.
A trial played exactly as one before it in its chunk (``_alike``: scripted agents play
the same trial again and again) takes that trial's views under its own ids (``_again``).

The cache: each chunk's views are written as Parquet under ``RUN/.cache/analysis/KEY/``,
where KEY hashes, for every file of the chunk, its name, size, inode, modification time
and status-change time, with the vocabulary the cheap talk is read with, the reader mode
and this module's ``CACHE_VERSION``. Any write to a file (a tampered payoff, a resumed
trial) changes its status-change time, which the kernel sets and no user can set back
(restoring the modification time sets it too), and so its chunk's key: the chunk is read
and audited again, and the cache never serves rows for bytes it did not audit. A copied
or restored folder gets new times and is read again. Entries no longer used by the
folder's chunks are removed after a scan, and only while no other scan holds the cache
(scans take a shared lock on ``.cache/analysis/.lock``; removal needs it exclusively and
does not wait). An entry is complete when its marker (``done.json``, written last) names
its parts; parts are written by atomic replace and never deleted to be rewritten, and an
entry that cannot be read as its marker says is read again from the transcripts: the
cache is never served short. Parquet, not pickle: a results folder may come from someone
else, and reading a cache must not run code.

Memory: the injection view keeps the honest agents' rows only (every one of its measures
is over them) and its messages' verdicts (echo, endorse) without their text, and the
report holds the "slim" agent-round table (no cheap-talk text, no lists of
received messages: those are in the full table ``tables`` writes, streamed chunk by chunk
to one Parquet file, and the per-trial views built from them in the workers).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NamedTuple

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stagbench.analysis import injection, metrics
from stagbench.analysis.lexical import DEFAULT, Detector, detector_for
from stagbench.analysis.tables import (
    CATEGORICAL,
    READ_ERRORS,
    LoadReport,
    RoundsColumns,
    TrialRows,
    finish_rounds,
    read_trial,
    to_arrow,
    transcript_files,
    trial_digest,
    unreadable,
)
from stagbench.errors import TranscriptError
from stagbench.records import TRANSCRIPT_VERSION, Lexicon, check_header, file_identity
from stagbench.records.reader import header_sans_ids, read_file

try:  # POSIX: scans of one folder coordinate through a lock on its cache
    import fcntl
except ImportError:  # pragma: no cover (Windows)
    fcntl = None  # type: ignore[assignment]

#: bump when what a chunk's views hold changes, so old cache entries are not read
CACHE_VERSION = 27
#: transcripts per chunk (a chunk's views are built, and cached, together)
CHUNK = 2000
#: the agent-round columns that hold text or lists (left out of the slim table)
TEXT_COLUMNS = ("message", "reasoning", "received", "received_from", "stag_signals_from")
_PARTS = ("rounds", "full", "agent_trials", "inj_rows", "inj_messages", "inj_trials", "load")


@dataclass
class Scan:
    """Every view of a run's readable transcripts, and what could not be read."""

    rounds: pd.DataFrame  # agent-rounds, slim (no TEXT_COLUMNS: ``iter_full`` has them)
    agent_trials: pd.DataFrame  # metrics.agent_trials, not yet classified
    injection: injection.InjectionData
    load: LoadReport
    #: each chunk's cache folder, or its views when not cached (``full`` among them)
    parts: list[Path | dict[str, Any]]


def cache_dir(run: Path) -> Path:
    return run / ".cache" / "analysis"


def _signature(path: Path, dir_fd: int | None = None) -> bytes:
    """The file's name and ``file_identity``: what its bytes cannot change without.
    ``dir_fd``: its folder, open: the file statted by its name there."""
    name = path.name
    try:
        st = path.stat() if dir_fd is None else os.stat(name, dir_fd=dir_fd)
    except OSError:
        return name.encode() + b"\0-"
    return f"{name}\0{file_identity(st)}".encode()


def _signatures(paths: list[Path], folder: Path | None) -> Iterator[bytes]:
    """``_signature`` of each file, in order. ``folder``: the one folder every path is
    in, opened once and each file statted by its name there (half the time of statting
    100,000 paths, whose full strings are never made), where the platform allows."""
    fd = None
    if folder is not None and os.stat in os.supports_dir_fd:
        with contextlib.suppress(OSError):
            fd = os.open(folder, os.O_RDONLY)
    try:
        for p in paths:
            yield _signature(p, fd)
    finally:
        if fd is not None:
            os.close(fd)


def _key(
    paths: list[Path], lexicon: Lexicon | None, strict: bool, folder: Path | None = None
) -> str:
    """The cache key of a chunk (see the module's docstring); ``folder``: the one folder
    all ``paths`` are in, when known (``_signatures``)."""
    h = hashlib.blake2b(digest_size=16)
    lex = orjson.dumps((lexicon or DEFAULT.lexicon).model_dump(mode="json"))
    h.update(orjson.dumps([CACHE_VERSION, strict]) + lex)
    for sig in _signatures(paths, folder):
        h.update(sig + b"\n")
    return h.hexdigest()


def _build(
    paths: list[Path],
    blobs: Sequence[bytes | TranscriptError | None],
    detector: Detector,
    strict: bool,
    full: bool,
) -> dict[str, pd.DataFrame | pa.Table]:
    """Every view of one chunk, from the files' bytes (an error or ``None``: unreadable,
    listed with why)."""
    cols = RoundsColumns()
    # the injection views: the honest agents' rows, the messages' verdicts without their
    # text (it is in the full table)
    inj = injection.TrialViews(honest_only=True, texts=False)
    load: list[dict[str, Any]] = []
    per_trial: list[tuple[Any, list[dict[str, Any]]]] = []  # trials with rows: their agents
    made: dict[Any, list[dict[str, Any]]] = {}  # agents' rows by what they are made of
    alike: dict[int, tuple[_Views, _Content]] = {}  # a trial's views by its content
    for path, blob in zip(paths, blobs, strict=True):
        try:
            if not isinstance(blob, bytes):
                raise blob or TranscriptError(f"cannot read transcript {path}")
            content = None if strict else _alike(blob)
            seen = alike.get(content.digest) if content is not None else None
            if content is not None and seen is not None and content.same(seen[1]):
                rows, agents, ident = _again(seen[0], content, path, inj)
            else:
                events, rows, ident = read_trial(path, strict, detector, blob)
                agents = _agents(rows, detector, made)
                views = inj.add(events, rows.rows["action"], rows.said)
                if content is not None and seen is None:
                    alike[content.digest] = ((rows, agents, views), content)
        except READ_ERRORS as exc:
            why = unreadable(path, exc, blob if isinstance(blob, bytes) else None)
            load.append({"path": str(path), "trial_id": None, "spec": None, "digest": None,
                         "corrupt": why})  # fmt: skip
            continue
        load.append(dict(zip(_LOAD, (*ident, None), strict=True)))
        cols.add(rows)
        if rows.size:
            per_trial.append((rows.const["trial_id"], agents))
    out: dict[str, pd.DataFrame | pa.Table] = {"load": pd.DataFrame(load, columns=list(_LOAD))}
    if len(cols):
        df = finish_rounds(cols.frame())  # with stag, valid and n_received
        out["agent_trials"] = _agent_trials(df, per_trial, detector)
        if full:
            out["full"] = to_arrow(df)
        out["rounds"] = df.drop(columns=list(TEXT_COLUMNS))
    out["inj_trials"], out["inj_rows"], out["inj_messages"] = inj.frames()
    return out


_LOAD = ("path", "trial_id", "spec", "digest", "corrupt")

#: a trial's agent-rounds, agent-trial rows and injection views
_Views = tuple[TrialRows, list[dict[str, Any]], injection.Columns]


class _Content(NamedTuple):
    """A transcript as ``_alike`` reads it: everything but its trial id, seed and
    repetition, by the hash of ``rest`` (its header without them) and its events (the
    bytes of ``blob`` after ``end``, the header line's end), and its ``header``."""

    digest: int
    rest: bytes
    blob: bytes
    end: int
    header: dict[str, Any]

    def same(self, other: _Content) -> bool:
        """The same content byte for byte (a hash may be shared by others)."""
        return self.rest == other.rest and self.blob[self.end :] == other.blob[other.end :]


def _alike(blob: bytes) -> _Content | None:
    """A transcript of this format version (no migration) as its content, everything but
    its trial id, seed and repetition; ``None`` for any other file (read as usual). Every
    view of a trial is a function of its content and those three ids, and trials played
    alike (scripted agents, templated talk: the same header but for its ids, byte-identical
    events) have the same content: the views of the first are the views of the others,
    under their ids (``_again``), and the others need no parse, no audit and no walk of
    their events. The content is held as a hash and the file's own bytes (a chunk holds
    them anyway), never copied; files of one hash are compared byte for byte."""
    end = blob.find(b"\n")
    if end < 0 or b"\r" in blob:  # the reader splits lines at a lone CR too: read as usual
        return None
    try:
        head = orjson.loads(blob[:end])
    except orjson.JSONDecodeError:
        return None
    if type(head) is not dict or head.get("type") != "header":
        return None
    rest = header_sans_ids(head) if head.get("version") == TRANSCRIPT_VERSION else None
    if rest is None:
        return None
    return _Content(hash((rest, blob[end:])), rest, blob, end, head)


def _again(
    seen: _Views, content: _Content, path: Path, inj: injection.TrialViews
) -> tuple[TrialRows, list[dict[str, Any]], tuple[str, str, str, str]]:
    """The views of a trial whose ``content`` (``_alike``) is that of ``seen``'s trial,
    which was read, checked and audited in full: its header checked as any other file's
    (its ids may be of the wrong type), and ``seen``'s views under its ids."""
    head = content.header
    check_header(head, str(path), content.rest)
    trial = head["trial"]
    tid, repetition = trial["trial_id"], trial["repetition"]
    rows, agents, views = seen
    rows = dataclasses.replace(
        rows, const={**rows.const, "trial_id": tid, "repetition": repetition}
    )
    inj.add_again(views, tid, repetition)
    ident = (str(path), str(tid), str(head["spec_name"]), trial_digest(trial))
    return rows, [{**row, "trial_id": str(tid)} for row in agents], ident


def _agents(
    trial: TrialRows, detector: Detector, memo: dict[Any, list[dict[str, Any]]] | None = None
) -> list[dict[str, Any]]:
    """One trial's rows of ``metrics.agent_trials`` (its honest agents, by seat), from its
    agent-rounds as lists (``metrics.agent_row``), without sorting and listing a table.
    ``memo``: the rows of the trials read before by what they are made of (everything
    ``agent_row`` reads but the trial id; one detector's): a trial played as another was
    (scripted, templated talk) has its rows with its own id."""
    if not trial.size:
        return []
    roles = trial.seats["role"]
    honest = [s for s, role in enumerate(roles) if role == "honest"]
    if not honest:
        return []
    n, rounds, rows = len(roles), trial.rounds, trial.rows
    # by round (1..rounds), then seat
    actions = [a if isinstance(a, str) else None for a in rows["action"]]
    payoffs = [float(p) for p in rows["payoff"]]
    said = list(zip(rows["message"], rows["reasoning"], strict=True))
    flags = list(rows["promised_no_stag"])
    signals = rows["stag_signals_from"]
    tid, hare = str(trial.const["trial_id"]), float(trial.const["hare_payoff"])
    key: tuple[Any, ...] | None = None
    if memo is not None:
        key = (n, rounds, hare, tuple(honest), tuple(actions), tuple(payoffs),
               tuple(map(tuple, signals)), tuple(said), tuple(flags))  # fmt: skip
        try:
            made = memo.get(key)
        except TypeError:  # a value that cannot be hashed: made for this trial alone
            made, key = None, None
        if made is not None:
            return [{**row, "trial_id": tid} for row in made]
    act = [actions[i : i + n] for i in range(0, rounds * n, n)]
    pay = [payoffs[i : i + n] for i in range(0, rounds * n, n)]
    heard = [signals[i : i + n] for i in range(0, rounds * n, n)]
    talk = [said[i : i + n] for i in range(0, rounds * n, n)]
    no_stag = [flags[i : i + n] for i in range(0, rounds * n, n)]
    seats, played = range(n), range(1, rounds + 1)
    out = [
        metrics.agent_row(tid, s, seats, played, act, pay, heard, talk, hare, detector, no_stag)
        for s in honest
    ]
    if memo is not None and key is not None:
        memo[key] = out
    return out


def _agent_trials(
    df: pd.DataFrame, per_trial: list[tuple[Any, list[dict[str, Any]]]], detector: Detector
) -> pd.DataFrame:
    """``metrics.agent_trials(df)`` of a chunk's agent-round table ``df`` from its trials'
    rows made as they were read (``_agents``): in trial id order, joined to the same
    columns of ``df``. Two trials with one id (the table function merges their rows), or
    an id that is not text (it sorts ids as their type does), go the table function's way."""
    ids = [tid for tid, _ in per_trial]
    if len(set(ids)) != len(ids) or not all(type(tid) is str for tid in ids):
        return metrics.agent_trials(df, detector)
    ordered = sorted(range(len(ids)), key=ids.__getitem__)
    res = pd.DataFrame([agent for i in ordered for agent in per_trial[i][1]])
    return metrics.with_agent_meta(res, df)


MARKER = "done.json"


def _write_part(folder: Path, views: dict[str, pd.DataFrame | pa.Table]) -> None:
    """Write a chunk's views into its entry, each file by an atomic replace, and the
    marker naming them last: a reader never sees a half-written entry as complete, and
    a complete entry is never deleted to be rewritten (another process may be reading)."""
    folder.mkdir(parents=True, exist_ok=True)
    tag = f".tmp{os.getpid()}"
    for name, view in views.items():
        if not isinstance(view, pa.Table):
            view = pa.Table.from_pandas(view, preserve_index=False)
        tmp = folder / f".{name}.parquet{tag}"
        # no column statistics: parts are read whole, never filtered (a fifth of the write)
        pq.write_table(view, tmp, write_statistics=False)
        os.replace(tmp, folder / f"{name}.parquet")
    names = sorted(set(views) | set(_listed(folder) or ()))
    tmp = folder / f".{MARKER}{tag}"
    tmp.write_bytes(orjson.dumps({"version": CACHE_VERSION, "parts": names}))
    os.replace(tmp, folder / MARKER)


def _listed(entry: Path) -> list[str] | None:
    """The parts a complete entry holds (its marker), or ``None``: not complete."""
    try:
        data = orjson.loads((entry / MARKER).read_bytes())
        parts = data["parts"]
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
        return None
    if not isinstance(parts, list) or not all(isinstance(p, str) for p in parts):
        return None
    return parts


def _chunk(
    paths: list[Path],
    lexicon: Lexicon | None,
    strict: bool,
    full: bool,
    cache: Path | None,
    key: str | None = None,
) -> tuple[str, dict[str, pd.DataFrame | pa.Table] | None]:
    """A chunk's key, and its views when they are not in the cache (else ``None``). The
    key is taken before the bytes are read (``key``: the scan took it already, before it
    handed the chunk over): a file changed in between gets a new key at the next read,
    so a cache entry never stands for bytes it was not built from."""
    if key is None:
        key = _key(paths, lexicon, strict)
    if cache is not None and _cached(cache / key, full):
        return key, None
    blobs: list[bytes | TranscriptError] = []
    for p in paths:
        try:
            blobs.append(read_file(p))
        except TranscriptError as exc:  # unreadable, or not a regular file: listed with why
            blobs.append(exc)
    with _no_cyclic_gc():
        views = _build(paths, blobs, detector_for(lexicon), strict, full)
    if cache is not None:
        try:
            _write_part(cache / key, views)
            return key, None
        except OSError:  # a read-only folder: hand the views back instead
            pass
    return key, views


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """No cyclic garbage collection while a chunk is built: its views are tens of thousands
    of lists and dicts that live until the chunk is done, and the collector walked them
    again and again (about a seventh of a chunk's time); what a chunk leaves in cycles is
    bounded by the chunk and left to the collector's next run."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _cached(entry: Path, full: bool) -> bool:
    """The cache entry is complete (its marker, and every part it names), with the full
    table when ``full`` asks for one (a chunk with no readable trial has none)."""
    parts = _listed(entry)
    if parts is None or "load" not in parts:
        return False
    if not all((entry / f"{p}.parquet").exists() for p in parts):
        return False
    return not full or "full" in parts or "rounds" not in parts


class _Broken(Exception):
    """A cache entry that cannot be read as its marker says: read the chunk again."""

    def __init__(self, entry: Path) -> None:
        super().__init__(str(entry))
        self.entry = entry


def _part(entry: Path, name: str) -> pa.Table | None:
    """One part of a complete entry (``None``: the chunk has no such view)."""
    parts = _listed(entry)
    if parts is None:
        raise _Broken(entry)
    if name not in parts:
        return None
    try:
        return pq.read_table(entry / f"{name}.parquet")
    except (OSError, pa.ArrowException) as exc:
        raise _Broken(entry) from exc


def _read(entry: Path | dict[str, Any], name: str) -> pd.DataFrame | None:
    if isinstance(entry, dict):
        view = entry.get(name)
        if isinstance(view, pa.Table):
            return None  # the full table is streamed by iter_full, never held
        return view if isinstance(view, pd.DataFrame) else None
    table = _part(entry, name)
    return table.to_pandas() if table is not None else None


#: text columns of the injection views held as categories (their levels repeat: a few per
#: run), with their levels sorted, so that grouping and sorting by them go as by the text
INJECTION_CATEGORIES = (*injection.FACTORS, "role", "model")


#: views whose parts are joined as Arrow however they were read (cached or not): their
#: categories are then the same either way (pandas' concat turns differing ones to text)
_AS_ARROW = ("agent_trials",)


def _arrow(entry: Path | dict[str, Any], name: str) -> pa.Table | None:
    """One part of a view as Arrow: read from the cache, or as ``_write_part`` writes it."""
    if isinstance(entry, Path):
        return _part(entry, name)
    view = entry.get(name)
    return (
        pa.Table.from_pandas(view, preserve_index=False) if isinstance(view, pd.DataFrame) else None
    )


def _gather(entries: list[Path | dict[str, Any]], name: str) -> list[pd.DataFrame]:
    """One view's parts in chunk order: from the cache, concatenated as Arrow and turned
    into one frame at once (much faster than a frame per chunk), the Arrow buffers freed
    as each column is converted."""
    if name in _AS_ARROW or all(isinstance(e, Path) for e in entries):
        read = (_arrow(e, name) for e in entries)
        tables = [_wide_dictionaries(t) for t in read if t is not None and t.num_rows]
        if not tables:
            return []
        try:
            table = pa.concat_tables(tables, promote_options="permissive").unify_dictionaries()
            if name in ("inj_rows", "inj_messages"):
                table = _encoded(table, INJECTION_CATEGORIES)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            return [_categories(t.to_pandas(), name) for t in tables]
        del tables
        frame = table.to_pandas(split_blocks=True, self_destruct=True)
        del table
        return [_categories(frame, name)]
    frames = (_read(entry, name) for entry in entries)
    return [_categories(f, name) for f in frames if f is not None and len(f)]


def _wide_dictionaries(table: pa.Table) -> pa.Table:
    """Categories indexed by 32-bit integers: the chunks' categories (a chunk's trial ids
    fit 16 bits, a run's do not) can then be unified into one table."""
    fields = [
        pa.field(f.name, pa.dictionary(pa.int32(), f.type.value_type), f.nullable, f.metadata)
        if pa.types.is_dictionary(f.type) and f.type.index_type.bit_width < 32
        else f
        for f in table.schema
    ]
    return table.cast(pa.schema(fields, metadata=table.schema.metadata))


def _encoded(table: pa.Table, columns: tuple[str, ...]) -> pa.Table:
    """``columns`` of ``table`` that hold text as dictionaries (categories in pandas)."""
    for col in columns:
        i = table.schema.get_field_index(col)
        kind = table.schema.field(i).type if i >= 0 else None
        if kind is not None and (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            table = table.set_column(i, col, pc.dictionary_encode(table.column(i)))
    return table


def _categories(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """The injection views' repeating text columns (``INJECTION_CATEGORIES``) as
    categories with sorted levels (a small fraction of the memory of the text)."""
    if name not in ("inj_rows", "inj_messages"):
        return frame
    for col in INJECTION_CATEGORIES:
        if col not in frame.columns:
            continue
        if not isinstance(frame[col].dtype, pd.CategoricalDtype):
            frame[col] = frame[col].astype("category")  # levels sorted
        elif not frame[col].cat.categories.is_monotonic_increasing:
            frame[col] = frame[col].cat.reorder_categories(frame[col].cat.categories.sort_values())
    return frame


def scan(
    source: str | Path | Iterable[str | Path],
    *,
    lexicon: Lexicon | None = None,
    strict: bool = False,
    workers: int | None = None,
    cache: bool = True,
    full: bool = False,
    views: bool = True,
) -> Scan:
    """Read a run's transcripts once into every view (see the module's docstring).

    ``full`` also keeps each chunk's full agent-round table (with the cheap talk) for
    ``iter_full``; ``views=False`` reads only what could be read (the load report), not
    the tables; ``cache=False`` or a source that is not one run folder reads without a
    cache.
    """
    files = transcript_files(source)
    run = Path(source) if isinstance(source, str | Path) else None
    where = None
    if cache and run is not None and run.is_dir() and (run / "transcripts").is_dir():
        where = cache_dir(run)
        try:
            where.mkdir(parents=True, exist_ok=True)
        except OSError:
            where = None
    lock = _shared_lock(where) if where is not None else None
    try:
        return _scan(files, where, lock, lexicon, strict, workers, full, views)
    finally:
        if lock is not None:
            lock.close()  # releases the lock


def _shared_lock(where: Path) -> IO[bytes] | None:
    """A shared lock on the cache for a scan's whole life: scans run side by side, and
    none removes an entry while another may be reading it (``_evict``)."""
    if fcntl is None:  # not on this platform: no eviction then
        return None
    try:
        handle = open(where / ".lock", "ab")  # noqa: SIM115 (held for the scan)
    except OSError:
        return None
    try:
        fcntl.flock(handle, fcntl.LOCK_SH)
    except OSError:
        handle.close()
        return None
    return handle


def _evict(where: Path, keep: set[str], lock: IO[bytes] | None) -> None:
    """Remove the entries this folder's chunks no longer use, only while no other scan
    holds the cache (an exclusive lock taken without waiting; otherwise left for later)."""
    if lock is None or fcntl is None:
        return
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return
    try:
        for old in where.iterdir():
            if old.is_dir() and not old.name.startswith(".") and old.name not in keep:
                shutil.rmtree(old, ignore_errors=True)
    finally:
        fcntl.flock(lock, fcntl.LOCK_SH)


def _scan(
    files: list[Path],
    where: Path | None,
    lock: IO[bytes] | None,
    lexicon: Lexicon | None,
    strict: bool,
    workers: int | None,
    full: bool,
    views: bool,
) -> Scan:
    chunks = [files[i : i + CHUNK] for i in range(0, len(files), CHUNK)]
    results: list[tuple[str, dict[str, pd.DataFrame | pa.Table] | None]] = []
    todo = list(range(len(chunks)))
    if where is not None:  # a warm cache needs no worker: the keys are file metadata
        # (the files of a cached scan are those of one run's transcripts folder)
        folder = where.parent.parent / "transcripts"
        results = [(_key(c, lexicon, strict, folder), None) for c in chunks]
        todo = [i for i, (k, _) in enumerate(results) if not _cached(where / k, full)]
    n = len(todo)
    workers = max(1, min(workers or os.cpu_count() or 1, n))
    keys = [results[i][0] if where is not None else None for i in todo]  # taken above
    args = ([chunks[i] for i in todo], [lexicon] * n, [strict] * n, [full] * n, [where] * n, keys)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            done = list(pool.map(_chunk, *args))
    else:
        done = [_chunk(*a) for a in zip(*args, strict=True)]
    if where is None:
        results = done
    else:
        for i, result in zip(todo, done, strict=True):
            results[i] = result
    entries: list[Path | dict[str, Any]] = [
        built if built is not None else where / key  # type: ignore[operator]
        for key, built in results
    ]
    load = LoadReport(files=len(files))
    wanted = [name for name in _PARTS if name != "full" and (views or name == "load")]
    parts: dict[str, list[pd.DataFrame]] = {name: [] for name in wanted}
    while True:
        try:
            for name in parts:
                parts[name] = _gather(entries, name)
            break
        except _Broken as broken:  # damaged on disk: read that chunk again, in memory
            i = entries.index(broken.entry)
            key, built = _chunk(chunks[i], lexicon, strict, full, None)
            assert built is not None
            if where is not None:
                with contextlib.suppress(OSError):
                    _write_part(where / key, built)
            entries[i] = built
    if where is not None:
        _evict(where, {key for key, _ in results}, lock)
    for part in parts.pop("load"):
        columns = (part[c].tolist() for c in _LOAD)  # plain lists: fast to walk
        for path, tid, spec, digest, why in zip(*columns, strict=True):
            if isinstance(why, str):
                load.corrupt.append((str(path), why))
            else:
                load.read.append((str(path), str(tid), str(spec), str(digest)))
    if len(load.read) + len(load.corrupt) != load.files:  # never a silently short read
        raise TranscriptError(
            f"the analysis cache under {where} accounts for "
            f"{len(load.read) + len(load.corrupt)} of {load.files} transcripts; delete "
            "that folder and run the command again"
        )
    if not views:
        none = injection.InjectionData(pd.DataFrame(), pd.DataFrame(), pd.DataFrame())
        return Scan(pd.DataFrame(), pd.DataFrame(), none, load, entries)
    rounds = _concat(parts.pop("rounds"), categories=True)  # derived columns made per chunk
    inj = injection.InjectionData(
        injection.finish_rows(_categories(_concat(parts.pop("inj_rows")), "inj_rows")),
        _categories(
            _concat(parts.pop("inj_messages"), pd.DataFrame(columns=injection.MESSAGE_COLUMNS)),
            "inj_messages",
        ),
        _concat(parts.pop("inj_trials")),
        list(load.corrupt),
    )
    at = _concat(parts.pop("agent_trials"))
    pa.default_memory_pool().release_unused()  # what the conversions no longer hold
    return Scan(rounds, at, inj, load, entries)


def _concat(
    frames: list[pd.DataFrame], empty: pd.DataFrame | None = None, categories: bool = False
) -> pd.DataFrame:
    if not frames:
        return empty if empty is not None else pd.DataFrame()
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if not categories:
        return df
    for col in df.columns:  # concat of differing categories falls back to object
        if col not in CATEGORICAL:
            continue
        if not isinstance(df[col].dtype, pd.CategoricalDtype):
            df[col] = df[col].astype("category")
        elif not df[col].cat.categories.is_monotonic_increasing:  # sorted, as one read gives
            df[col] = df[col].cat.reorder_categories(df[col].cat.categories.sort_values())
    return df


def iter_full(result: Scan, trial_ids: set[str] | None = None) -> Iterator[pa.Table]:
    """The full agent-round table (cheap talk included), one chunk at a time (read with
    ``scan(..., full=True)``), restricted to ``trial_ids`` when given."""
    for entry in result.parts:
        if isinstance(entry, dict):
            table = entry.get("full")
            if not isinstance(table, pa.Table):
                continue
        else:
            try:
                found = _part(entry, "full")
            except _Broken as exc:  # removed or damaged since the scan: never a short table
                raise TranscriptError(
                    f"the analysis cache entry {entry} changed while it was read (another "
                    "command on this folder?): run the command again"
                ) from exc
            if found is None:
                continue
            table = found
        if trial_ids is not None:
            mask = pc.is_in(table.column("trial_id").cast(pa.string()), pa.array(sorted(trial_ids)))
            table = table.filter(mask)
        if table.num_rows:
            yield table
