"""The results folder: one transcript file per trial, written atomically, plus a manifest.

Layout::

    RUN_DIR/manifest.json        what ran, with which spec, how far it got
    RUN_DIR/spec.toml            the spec as given
    RUN_DIR/trials.jsonl         every trial of the design, one TrialSpec a line
    RUN_DIR/transcripts/ID.jsonl one finished trial (written whole, then renamed)
    RUN_DIR/failures/ID.txt      why a trial failed (it is retried on the next run)
    RUN_DIR/quarantine/          transcripts found corrupt, moved aside and re-run
    RUN_DIR/.stagbench.lock      held by the run working in the folder (one at a time)
    RUN_DIR/.checked/*.log       transcripts known sound, by their file's identity (below)

A transcript exists only once its trial is finished, so a killed run loses nothing
finished, and re-running the same spec into the same folder runs only what is missing.

Finding what is done (``scan``) must catch a transcript that was edited after it was
written, and at a million transcripts reading every one again (0.7 ms each for a scripted
trial) took a quarter of an hour at every start and every end of a run. So each process
that writes a transcript, or reads one and finds it sound, appends the file's identity
(name, size, inode, modification and status-change times in ns) to its own log under
``.checked/``, and ``scan`` reads again only files whose identity no log vouches for. An
edit changes the status-change time, which the kernel sets on every write and rename and
no one can set back, so an edited file is read and audited again whatever its size and
modification time (to the kernel's timestamp grain: an edit within the same few
milliseconds as the write would keep the time; a run's writer is the only process
there then); a copied or restored folder has new inodes and is checked once again.
The logs vouch as far as the file system's metadata does (the analysis cache's rule too):
deleting ``.checked/`` only costs one full check.

A folder is used only if it is new, empty, or already a stagbench results folder: a
user's own folder is never written to (``check_folder``). One run at a time works in a
folder (``lock``): a second would run, and pay for, the same trials again. The workers of
``run --workers K`` share their parent's lock.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import math
import os
import re
import shutil
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

import stagbench
from stagbench.errors import StagbenchError, StoreError, TranscriptError
from stagbench.games.audit import consistent
from stagbench.records import (
    Manifest,
    Transcript,
    file_identity,
    read_events,
    read_manifest,
    same_trial,
    validate_events,
)
from stagbench.runs.spec import ExperimentSpec, TrialSpec, parse_spec

#: Settings that change how a run is carried out, not what it measures: a resumed run may
#: change them (a new endpoint, a higher budget, other rate limits).
OPERATIONAL = {"model_settings", "budget_usd", "description", "analysis"}
#: the most one spend-ledger entry may say (beyond it, the entry is no entry)
MAX_ENTRY_USD = 1e9
#: the largest spend-ledger entry file read (its amounts by model: a spec of many models)
MAX_ENTRY_BYTES = 1 << 20


def _an_amount(value: object) -> bool:
    """A ledger amount: a number (not a boolean) from 0 to ``MAX_ENTRY_USD``."""
    return type(value) in (int, float) and 0.0 <= value <= MAX_ENTRY_USD  # type: ignore[operator]


#: bytes read at a time from a transcript's end for its last line (``_last_line``)
_TAIL = 4096


def _last_line(path: Path) -> bytes:
    """The last non-empty line of a file, read from its end (a big game's trial_end line
    may run past any fixed tail)."""
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        size = _TAIL
        while True:
            start = max(0, end - size)
            f.seek(start)
            tail = f.read(end - start).rstrip()
            cut = tail.rfind(b"\n")
            if cut >= 0 or start == 0:
                return tail[cut + 1 :]
            size *= 4


LOCK_NAME = ".stagbench.lock"
#: what a results folder may hold besides a manifest (a run killed while creating it)
OWN_ENTRIES = {
    "manifest.json", "spec.toml", "trials.jsonl", "transcripts", "failures", "quarantine",
    "cache", "report", "agent_rounds.parquet", LOCK_NAME, ".checked", "spend",
}  # fmt: skip
CHECKED_DIR = ".checked"
#: what a vouched-for file passed: bump when the checks a scan makes grow (a log of an
#: older version vouches for nothing, so its files are read and checked again, once)
CHECKS_VERSION = 2
#: logs ``scan`` folds into one when it finds more (each process appends to its own)
MAX_CHECKED_LOGS = 16
_OWN_PATTERN = re.compile(r"worker-\d+\.log|\..+\.\d+\.tmp")
#: the smallest bytes of one action event and one round end in a transcript: with the
#: header (which holds the trial's record) a floor under a transcript's size
MIN_ACTION_BYTES = 70
MIN_ROUND_END_BYTES = 100


def spec_hash(spec: ExperimentSpec) -> str:
    """Hash of the validated design (comments, layout and operational settings do not count)."""
    design = spec.model_dump(mode="json", exclude=OPERATIONAL)
    canon = json.dumps(design, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


@contextmanager
def _io_errors(what: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise StoreError(
                f"disk full while {what}; finished transcripts are safe. Free space and "
                "run the same command again to resume."
            ) from exc
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise StoreError(f"permission denied while {what}: {exc.filename}") from exc
        raise StoreError(f"I/O error while {what}: {exc}") from exc


def _writer_alive(tmp: Path) -> bool:
    """Whether the process that owns ``.NAME.PID.tmp`` still runs."""
    try:
        pid = int(tmp.name.rsplit(".", 2)[-2])
    except (ValueError, IndexError):
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_checked(path: Path) -> Transcript:
    """A transcript strictly validated, and re-derived from its actions with the engine:
    a file that disagrees with itself (tampered, or written wrong) is a ``TranscriptError``,
    treated like corruption."""
    return validate_events(consistent(read_events(path), path), str(path))


def atomic_write(path: Path, text: str | bytes | Iterable[str], errors: str = "strict") -> None:
    """Write a file (text as UTF-8, encoded with ``errors``) so that readers see either
    nothing or all of it; ``text`` may come in pieces (a design's trial list, streamed)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with _io_errors(f"writing {path}"):
        done = False
        try:
            with open(tmp, "wb") as fh:
                if isinstance(text, bytes):
                    fh.write(text)
                elif isinstance(text, str):
                    fh.write(text.encode("utf-8", errors))
                else:
                    fh.writelines(piece.encode("utf-8", errors) for piece in text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            done = True
        finally:
            if not done:
                tmp.unlink(missing_ok=True)


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def bytes_floor(spec: ExperimentSpec) -> int:
    """A floor under the bytes a run of ``spec`` writes: each trial's line in trials.jsonl,
    and a transcript at least as big as its header plus one action per seat and one round
    end per round. Counted per cell, never by expanding the design."""
    total = 0
    for t in spec.cells():
        line = len(t.model_dump_json()) + 1
        g = t.game
        transcript = line + g.rounds * (g.n_players * MIN_ACTION_BYTES + MIN_ROUND_END_BYTES)
        total += spec.repetitions * (line + transcript)
    return total


def _free_bytes(path: Path) -> int | None:
    for p in (path, *path.parents):
        if p.exists():
            try:
                return shutil.disk_usage(p).free
            except OSError:
                return None
    return None


class RunLock:
    """An exclusive lock on a results folder, held while a run works in it. The kernel
    releases it when the holder dies (a SIGKILL included); the worker processes of
    ``run --workers`` inherit its file descriptor (``fd``), so it is held until the last
    of them ends."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class CheckedLog:
    """The identities of transcript files known sound (see the module's docstring): each
    process appends to a log of its own, one ``os.write`` a line (whole lines even from
    several threads, nothing buffered to lose), and ``known`` reads them all."""

    def __init__(self, root: Path) -> None:
        self.dir = root / CHECKED_DIR
        self._fd: int | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def add(self, path: Path, identity: str | None = None) -> None:
        """Vouch for ``path`` as it is now, or as it was when ``identity`` was taken (a
        reader takes it before reading, so a change while it read is not vouched for)."""
        try:
            line = f"{path.name} {identity or file_identity(os.stat(path))}\n".encode()
            with self._lock:
                if self._fd is None or self._pid != os.getpid():
                    self.dir.mkdir(exist_ok=True)
                    self._fd = os.open(
                        self._new_log(), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644
                    )
                    self._pid = os.getpid()
                os.write(self._fd, line)
        except OSError:
            pass  # not vouched for: the file is checked again next time, nothing is lost

    def _new_log(self) -> Path:
        """A log of this process's own, named by the checks its lines passed."""
        return self.dir / f"v{CHECKS_VERSION}-{os.getpid()}-{time.time_ns()}.log"

    def known(self) -> tuple[set[str], list[Path]]:
        """Every vouched-for ``name identity`` line, and the logs read. A damaged line
        (a crash mid-write, an edit) vouches for nothing, nor does a log of an older
        ``CHECKS_VERSION`` (it is removed)."""
        seen: set[str] = set()
        logs = sorted(self.dir.glob("*.log")) if self.dir.is_dir() else []
        current = f"v{CHECKS_VERSION}-"
        for old in [log for log in logs if not log.name.startswith(current)]:
            old.unlink(missing_ok=True)  # checked by fewer checks than a scan makes now
        logs = [log for log in logs if log.name.startswith(current)]
        for log in logs:
            try:
                text = log.read_text(errors="replace")
            except OSError:
                continue
            for line in text.splitlines():
                name, _, ident = line.partition(" ")
                if name.endswith(".jsonl") and len(ident.split(" ")) == 4:
                    seen.add(line)
        return seen, logs

    def compact(self, sound: list[str], logs: list[Path]) -> None:
        """One log in place of ``logs``: the lines the scan just found sound. A line
        another process appends meanwhile to a log removed here is lost, which only means
        a check again later."""
        self.close()
        try:
            text = "".join(f"{line}\n" for line in sound)
            atomic_write(self._new_log(), text)
            for log in logs:
                log.unlink(missing_ok=True)
        except (OSError, StoreError):
            pass

    def close(self) -> None:
        with self._lock:
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)
            self._fd = None


class RunStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.transcripts = self.root / "transcripts"
        self.failures = self.root / "failures"
        self.quarantine = self.root / "quarantine"
        #: what each invocation (process) of the run has spent, a file each (``SpendLedger``)
        self.spend = self.root / "spend"
        self.manifest_path = self.root / "manifest.json"
        self.checked = CheckedLog(self.root)

    # -- setup ---------------------------------------------------------------
    def check_folder(self) -> None:
        """Refuse a folder that is neither new, nor empty, nor a stagbench results folder:
        opening it would quarantine and replace the user's own files."""
        if not self.root.exists():
            return
        if not self.root.is_dir():
            raise StoreError(f"{self.root} is a file, not a folder: give --out a folder")
        if self.manifest_path.exists():
            return
        with _io_errors(f"reading {self.root}"):
            foreign = sorted(
                e.name
                for e in self.root.iterdir()
                if e.name not in OWN_ENTRIES and not _OWN_PATTERN.fullmatch(e.name)
            )
            if not foreign and self.transcripts.is_dir():
                # A run writes transcripts only after its manifest: these are someone else's.
                foreign = [f"transcripts/{p.name}" for p in sorted(self.transcripts.iterdir())]
        if foreign:
            shown = ", ".join(foreign[:5]) + (
                f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
            )
            raise StoreError(
                f"{self.root} is not empty and is not a stagbench results folder (no "
                f"manifest.json; it holds {shown}). Nothing was touched: give --out a new or "
                "empty folder, or a results folder of this spec to resume it."
            )

    def lock(self, spec: ExperimentSpec | None = None) -> RunLock:
        """Take the folder's lock, or refuse clearly if another run holds it. With ``spec``,
        a new folder is first checked to hold the design (``check_fits``): a refused run
        leaves nothing behind."""
        self.check_folder()
        if spec is not None and self.read_manifest() is None:
            self.check_fits(spec)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock, as before
            return RunLock(None)
        with _io_errors(f"creating {self.root}"):
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StoreError(f"cannot lock {self.root}: {exc}") from exc
            raise StoreError(
                f"another stagbench run (pid {holder}) is working in {self.root}: a second "
                "run there would run, and pay for, the same trials again. Wait for it to end "
                "(or stop it) and run this command again; to use more cores, run one "
                "command with --workers K."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return RunLock(fd)

    def check_fits(self, spec: ExperimentSpec) -> None:
        """Refuse a design whose records alone cannot fit on the disk, with the numbers."""
        need = bytes_floor(spec)
        free = _free_bytes(self.root)
        if free is not None and need > free:
            raise StoreError(
                f"the design has {spec.n_trials:,} trials; their records alone need at least "
                f"{_size(need)} and {_size(free)} are free at {self.root}: it cannot fit. "
                "Lower repetitions or factors, or split the design into specs run apart."
            )

    def _same_design(self, digest: str) -> bool:
        """The folder's own spec, read by this stagbench, is the design hashing to
        ``digest``: the manifest's hash differs only because a newer stagbench knows more
        spec fields (each at its default), so the folder's finished trials still count."""
        try:
            text = (self.root / "spec.toml").read_text(encoding="utf-8")
            return spec_hash(parse_spec(text, str(self.root / "spec.toml"), self.root)) == digest
        except (OSError, UnicodeDecodeError, StagbenchError):
            return False

    def open(
        self,
        spec: ExperimentSpec,
        spec_text: str,
        trials: Iterable[TrialSpec] | None = None,
        check_space: bool = True,
    ) -> None:
        """Create the folder for this spec, or check it belongs to this spec (resume).
        ``trials`` (by default the spec's own, streamed) are written to trials.jsonl. A new
        folder is first checked to hold the design (``check_fits``) unless ``check_space``
        is False (a Ray task's scratch folder, which holds only its shard)."""
        self.check_folder()
        digest = spec_hash(spec)
        existing = self.read_manifest()
        if existing is not None and existing.spec_hash != digest and not self._same_design(digest):
            raise StoreError(
                f"{self.root} holds results of another spec ({existing.spec_name!r}, "
                f"hash {existing.spec_hash}); this spec hashes to {digest}. "
                "Use another --out folder."
            )
        if existing is None and check_space:
            self.check_fits(spec)
        with _io_errors(f"creating {self.root}"):
            for d in (self.root, self.transcripts, self.failures):
                d.mkdir(parents=True, exist_ok=True)
        for stale in self.transcripts.glob(".*.tmp"):  # left by a killed writer
            if not _writer_alive(stale):  # never the file of a live worker sharing the folder
                stale.unlink(missing_ok=True)
        if existing is None:
            atomic_write(self.root / "spec.toml", spec_text)
            stream = spec.iter_trials() if trials is None else trials
            atomic_write(self.root / "trials.jsonl", (t.model_dump_json() + "\n" for t in stream))
        ident = {
            "spec_name": spec.name,
            "spec_hash": digest,
            "stagbench_version": stagbench.__version__,
            "n_trials": spec.n_trials,
        }
        if existing is None:
            self.write_manifest(Manifest(**ident, created=_now()))
        else:
            self.update_manifest(**ident)

    def read_manifest(self) -> Manifest | None:
        return read_manifest(self.manifest_path)

    def write_manifest(self, manifest: Manifest) -> None:
        text = manifest.model_dump_json(indent=2, exclude_none=True)
        atomic_write(self.manifest_path, text + "\n")

    def update_manifest(self, **fields: Any) -> None:
        """Set ``fields`` in the manifest (validated) and stamp the time."""
        current = self.read_manifest()
        if current is None:
            raise StoreError(f"{self.root} has no manifest.json to update")
        data = {**current.model_dump(), **fields, "updated": _now()}
        self.write_manifest(Manifest.model_validate(data))

    # -- transcripts -----------------------------------------------------------
    def path_for(self, trial_id: str) -> Path:
        return self.transcripts / f"{trial_id}.jsonl"

    def write(self, transcript: Transcript) -> Path:
        return self._write_text(transcript.trial_id, transcript.to_jsonl_bytes())

    async def write_async(self, transcript: Transcript) -> Path:
        """``write`` with the file system work (open, fsync, rename) on a worker thread,
        so the event loop keeps serving model calls while the disk catches up."""
        data = transcript.to_jsonl_bytes()
        return await asyncio.to_thread(self._write_text, transcript.trial_id, data)

    def write_received(self, trial_id: str, data: bytes) -> Path:
        """Store a finished transcript's bytes made elsewhere (a Ray task), checked by the
        caller, as ``write`` would."""
        return self._write_text(trial_id, data)

    def _write_text(self, trial_id: str, text: str | bytes) -> Path:
        path = self.path_for(trial_id)
        atomic_write(path, text)
        self.checked.add(path)  # made (or checked, when received) here: sound as written
        failure = self.failures / f"{trial_id}.txt"
        if failure.exists():
            failure.unlink()
        return path

    def record_failure(self, trial_id: str, error: str) -> None:
        # Whatever the error holds (a lone surrogate from a reply) must not stop the batch.
        path = self.failures / f"{trial_id}.txt"
        atomic_write(path, error.rstrip() + "\n", errors="backslashreplace")

    def scan(self) -> tuple[set[str], list[tuple[str, str]]]:
        """Ids of valid finished transcripts; corrupt ones are moved to quarantine/ and
        returned as (file name, reason) so they are reported and re-run. A file whose
        identity a ``.checked`` log vouches for is not read again. What is not a regular
        file (a FIFO, a socket, a device, a folder) or cannot be statted (a symlink loop, a
        dangling link) is quarantined the same way, without being opened."""
        done: set[str] = set()
        corrupt: list[tuple[str, str]] = []
        if not self.transcripts.exists():
            return done, corrupt
        known, logs = self.checked.known()
        sound: list[str] = []
        design: tuple[dict[str, bytes], str] | tuple[()] | None = None  # read when needed
        for path in sorted(self.transcripts.glob("*.jsonl")):
            try:
                st = os.stat(path)
            except OSError as exc:
                if not os.path.lexists(path):
                    continue  # another worker sharing the folder quarantined it
                self._quarantine(path, f"{path} cannot be read: {exc.strerror}", corrupt)
                continue
            if not stat.S_ISREG(st.st_mode):
                self._quarantine(path, f"{path} is not a regular file ({_kind(st)})", corrupt)
                continue
            ident = file_identity(st)
            line = f"{path.name} {ident}"
            if line in known:
                done.add(path.stem)  # a file is vouched for under its trial's own name
                sound.append(line)
                continue
            try:
                t = read_checked(path)
                if t.trial_id != path.stem:
                    raise TranscriptError(f"{path} holds trial {t.trial_id}, not {path.stem}")
                if design is None:
                    design = self._design()
                foreign = design and not_of_design(t, path.stem, *design)
                if foreign:  # copied in by hand: not a trial of this run (9/8 finished)
                    raise TranscriptError(f"{path} is not this run's: {foreign}")
                done.add(t.trial_id)
                sound.append(line)
                self.checked.add(path, ident)  # as it was before it was read
            except TranscriptError as exc:
                self._quarantine(path, str(exc), corrupt)
        if len(logs) > MAX_CHECKED_LOGS:
            self.checked.compact(sound, logs)
        return done, corrupt

    def _design(self) -> tuple[dict[str, bytes], str] | tuple[()]:
        """The run's design (``design_trials``) and spec name, which its transcripts must be
        of; ``()`` when the folder holds no trial list or manifest to check them by."""
        manifest = self.read_manifest()
        trials = self.root / "trials.jsonl"
        if manifest is None or not trials.is_file():
            return ()
        return design_trials(trials), manifest.spec_name

    def _quarantine(self, path: Path, reason: str, corrupt: list[tuple[str, str]]) -> None:
        """Move ``path`` (itself, never what a link points to) into quarantine/ and note
        why; nothing when another worker sharing the folder moved it first."""
        if not os.path.lexists(path):
            return
        corrupt.append((path.name, reason))
        with _io_errors(f"quarantining {path}"):
            self.quarantine.mkdir(exist_ok=True)
            try:
                os.replace(path, self.quarantine / f"{path.name}.{_now_compact()}")
            except FileNotFoundError:
                corrupt.pop()  # the same race, a moment later

    def failed_ids(self) -> set[str]:
        """Trials whose last attempt failed (failures/ID.txt), finished since or not."""
        return {p.stem for p in self.failures.glob("*.txt")} if self.failures.exists() else set()

    def failure_line(self, failed: int, total: int) -> str:
        """What every run command says when trials failed."""
        return (
            f"{failed} of {total} trials failed; why is in {self.failures.resolve()}/. "
            "Run the same command again to retry them."
        )

    def location_lines(self) -> list[str]:
        """Where the results are, as every run command prints it at its end."""
        return [f"Results: {self.root.resolve()}", f"Transcripts: {self.transcripts.resolve()}"]

    def record_spend(
        self, name: str, usd: float, models: Mapping[str, float] | None = None
    ) -> None:
        """What invocation ``name`` (one process) has spent so far, in all and on each model
        (``models``), in a file of its own that only it writes (atomically): workers and
        the Ray driver never share one."""
        with _io_errors(f"writing {self.spend}"):
            self.spend.mkdir(exist_ok=True)
        entry = {"spent_usd": usd, "models": dict(sorted((models or {}).items()))}
        atomic_write(self.spend / f"{name}.json", json.dumps(entry) + "\n")

    def ledger_usd(self) -> float:
        """What the run's invocations have spent, by their ledger entries (``record_spend``)."""
        return math.fsum(usd for _, usd in self.ledger_entries())

    def ledger_entries(self) -> list[tuple[str, float]]:
        """The ledger's entries (file name, amount) that are one: a regular file of a
        finite amount of at least 0 (at most ``MAX_ENTRY_USD``); anything else (a FIFO, a
        folder, unreadable or odd content) is no entry and counts nothing."""
        out = []
        for path in sorted(self.spend.glob("*.json")) if self.spend.is_dir() else []:
            usd = self.ledger_entry(path)
            if usd is not None:
                out.append((path.name, usd))
        return out

    @staticmethod
    def ledger_entry(path: Path) -> float | None:
        """The amount of one ledger entry file, or None where it is none (see above)."""
        entry = RunStore.ledger_record(path)
        return None if entry is None else entry[0]

    @staticmethod
    def ledger_record(path: Path) -> tuple[float, dict[str, float]] | None:
        """One ledger entry file's amount and its amounts by model (those that are one, as
        the amount is; an entry of a build before them has none), or None where it is none."""
        try:
            st = os.stat(path)
            if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_ENTRY_BYTES:
                return None
            data = json.loads(path.read_bytes())
            value, models = data.get("spent_usd"), data.get("models", {})
        except (OSError, ValueError, AttributeError, RecursionError):
            return None
        if not _an_amount(value):
            return None
        if not isinstance(models, dict):
            models = {}
        by_model = {k: float(v) for k, v in models.items() if isinstance(k, str) and _an_amount(v)}
        return float(value), by_model

    def ledger_by_model(self) -> dict[str, float]:
        """What the run's invocations have spent on each model, by their ledger entries."""
        spent: dict[str, list[float]] = {}
        for path in sorted(self.spend.glob("*.json")) if self.spend.is_dir() else []:
            entry = self.ledger_record(path)
            for model, usd in (entry[1] if entry is not None else {}).items():
                spent.setdefault(model, []).append(usd)
        return {model: math.fsum(amounts) for model, amounts in spent.items()}

    def kept_cost_usd(self) -> float:
        """What the transcripts here cost: the sum of their trial_end ``cost_usd`` (each
        file's last line; a file without a readable one, which the run's scan will
        quarantine, counts nothing). A call answered from the reply cache costs 0 there."""
        total = 0.0
        for path in self.transcript_paths():
            try:
                end = json.loads(_last_line(path))
                cost = end.get("cost_usd", 0.0) if end.get("type") == "trial_end" else 0.0
            except (OSError, ValueError, AttributeError):
                continue
            if type(cost) in (int, float) and 0.0 <= cost < float("inf"):
                total += cost
        return total

    def spent_before_usd(self) -> float:
        """What the run has spent before this invocation, which its budget counts: its
        ledger (every invocation's calls: trials cut off or failed, replies later cached),
        and never less than its transcripts cost (a folder written before the ledger)."""
        return max(self.ledger_usd(), self.kept_cost_usd())

    def transcript_paths(self) -> list[Path]:
        """The transcripts here: regular files (or links to one) named ``*.jsonl``."""
        return [p for p, why in self.transcript_listing() if why is None]

    def transcript_listing(self) -> list[tuple[Path, str | None]]:
        """Every ``*.jsonl`` here with why it cannot be read as a transcript (None: a
        regular file), found without opening it: a FIFO would block its reader forever."""
        out: list[tuple[Path, str | None]] = []
        for path in sorted(self.transcripts.glob("*.jsonl")):
            try:
                st = os.stat(path)
            except OSError as exc:
                out.append((path, f"{path} cannot be read: {exc.strerror}"))
                continue
            ok = stat.S_ISREG(st.st_mode)
            out.append((path, None if ok else f"{path} is not a regular file ({_kind(st)})"))
        return out


def design_trials(path: Path) -> dict[str, bytes]:
    """trial id -> its record (a line of ``trials.jsonl`` at ``path``): the design a results
    folder holds. A line that is not a trial record is a ``StoreError``."""
    out: dict[str, bytes] = {}
    with _io_errors(f"reading {path}"):
        raw = path.read_bytes()
    for no, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            trial_id = orjson.loads(line)["trial_id"]
            if type(trial_id) is not str:
                raise TypeError(f"trial_id is {trial_id!r}")
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise StoreError(f"{path} line {no} is not a trial record: {exc}") from exc
        out[trial_id] = line
    return out


def not_of_design(
    transcript: Transcript, name: str, design: dict[str, bytes], spec_name: str
) -> str | None:
    """Why ``transcript``, found in the file ``name``.jsonl, is not one of the trials of a
    design (``design_trials``) of the spec ``spec_name``; None if it is. The rules of the
    report's design check (``analysis.design``): the spec's name, the file named after its
    trial, the trial in the design, and its record the design's."""
    trial_id = transcript.trial_id
    if transcript.header.spec_name != spec_name:
        return f"a transcript of spec {transcript.header.spec_name!r}, not {spec_name!r}"
    if trial_id != name:
        return f"the file holds trial {trial_id}, not {name}"
    record = design.get(trial_id)
    if record is None:
        return f"trial {trial_id} is not in the design (trials.jsonl)"
    if not same_trial(record, transcript.header.trial):
        return f"trial {trial_id}'s record differs from the design's (trials.jsonl)"
    return None


@dataclass
class MergeReport:
    """What ``merge_stores`` did. ``corrupt`` and ``foreign``: (file, why) of source files
    not copied; ``quarantined``: (file, why) of the destination's own files that were not
    sound or not the design's, moved to its quarantine/; ``conflicts``: (trial id, the
    file kept, a differing copy left out)."""

    copied: int = 0
    already: int = 0
    total: int = 0
    finished: int = 0
    failed: int = 0  # of the trials not finished, those a failure record says failed
    corrupt: list[tuple[str, str]] = field(default_factory=list)
    foreign: list[tuple[str, str]] = field(default_factory=list)
    quarantined: list[tuple[str, str]] = field(default_factory=list)
    conflicts: list[tuple[str, str, str]] = field(default_factory=list)


def merge_stores(out: str | Path, sources: list[Path]) -> MergeReport:
    """Copy the valid transcripts of several results folders of one spec into ``out``.

    Only transcripts of the destination's design are copied: a sound file (``read_checked``)
    named after its trial, of the spec's name, whose trial is in ``trials.jsonl`` with the
    same record (``not_of_design``); others are listed (``corrupt``, ``foreign``). Of two
    copies of one trial, the first is kept: the destination's own, then the sources' in the
    order given (each source's files in name order). A later copy that is the same trial
    record by record is counted as already there; one that differs (a trial run twice, by
    overlapping shards) is left out and listed in ``conflicts`` with the file kept, so which
    run of a trial is analysed never depends on anything but that order. The destination's
    own files that are not sound or not the design's are moved to its quarantine/, as a
    run's scan would, so the manifest counts only the design's trials present."""
    if not sources:
        raise StoreError("merge needs at least one source folder")
    manifests = []
    for src in sources:
        m = RunStore(src).read_manifest()
        if m is None:
            raise StoreError(f"{src} is not a results folder (no manifest.json)")
        manifests.append(m)
    hashes = {m.spec_hash for m in manifests}
    if len(hashes) != 1:
        raise StoreError(f"the sources hold runs of different specs: {sorted(hashes)}")
    target = RunStore(out)
    existing = target.read_manifest()
    if existing is not None and existing.spec_hash not in hashes:
        raise StoreError(f"{out} holds results of another spec ({existing.spec_name!r})")
    with target.lock():  # never a user's own folder, never beside a run working there
        return _merge(target, existing or manifests[0], sources)


def _check_for_merge(path: Path, design: dict[str, bytes], spec_name: str) -> str | None:
    """Why ``path`` cannot be merged (corrupt, or not the design's); None if it can."""
    try:
        t = read_checked(path)
    except TranscriptError as exc:
        return str(exc)
    return not_of_design(t, path.stem, design, spec_name)


def _same_copy(a: Path, b: Path) -> bool:
    """Whether two sound transcript files are the same trial record by record."""
    with _io_errors(f"comparing {a} and {b}"):
        if a.read_bytes() == b.read_bytes():
            return True
    try:
        return read_checked(a) == read_checked(b)
    except TranscriptError:
        return False


def _merge(target: RunStore, base: Manifest, sources: list[Path]) -> MergeReport:
    with _io_errors(f"creating {target.root}"):
        for d in (target.root, target.transcripts, target.failures):
            d.mkdir(parents=True, exist_ok=True)
        for name in ("spec.toml", "trials.jsonl"):
            if not (target.root / name).exists():
                shutil.copyfile(sources[0] / name, target.root / name)
    design = design_trials(target.root / "trials.jsonl")
    report = MergeReport(total=len(design))
    kept: dict[str, Path] = {}  # trial id -> the file its transcript here came from
    for path, why in target.transcript_listing():
        why = why or _check_for_merge(path, design, base.spec_name)
        if why is None:
            kept[path.stem] = path
        else:
            target._quarantine(path, why, report.quarantined)
    for src in sources:
        for path, why in RunStore(src).transcript_listing():
            if why is not None:
                report.corrupt.append((str(path), why))
                continue
            try:
                t = read_checked(path)
            except TranscriptError as exc:
                report.corrupt.append((str(path), str(exc)))
                continue
            why = not_of_design(t, path.stem, design, base.spec_name)
            if why is not None:
                report.foreign.append((str(path), why))
                continue
            first = kept.get(t.trial_id)
            if first is not None:
                if _same_copy(first, path):
                    report.already += 1
                else:
                    report.conflicts.append((t.trial_id, str(first), str(path)))
                continue
            with _io_errors(f"reading {path}"):
                data = path.read_bytes()
            atomic_write(target.path_for(t.trial_id), data)
            kept[t.trial_id] = path
            report.copied += 1
    _merge_ledgers(target, sources)
    failed = report.failed = len(_merge_failures(target, sources, design, kept))
    report.finished = len(kept)
    before = base.merged_from or []
    target.write_manifest(
        base.model_copy(
            update={
                "status": "complete" if report.finished == report.total else "incomplete",
                "finished_trials": report.finished,
                "failed_trials": failed,
                # the merged folder holds no one shard: a source's shard says nothing of it
                "shard": None,
                "shard_trials": None,
                "merged_from": [*before, *(str(s) for s in sources if str(s) not in before)],
                "updated": _now(),
            }
        )
    )
    return report


def _merge_failures(
    target: RunStore, sources: list[Path], design: Mapping[str, object], kept: Mapping[str, Path]
) -> set[str]:
    """The sources' records of failed trials (failures/ID.txt) of the design that no
    source finished and the destination has no record of: the merged folder then says
    they failed, with why, instead of listing them missing (rt42 F4). Returns the
    destination's failed trials, those finished there left out."""
    for src in sources:
        folder = RunStore(src).failures
        if not folder.is_dir() or folder.resolve() == target.failures.resolve():
            continue
        for path in sorted(folder.glob("*.txt")):
            trial_id = path.stem
            if trial_id not in design or trial_id in kept:
                continue
            dest = target.failures / path.name
            if dest.exists():
                continue
            with _io_errors(f"reading {path}"):
                data = path.read_bytes()
            atomic_write(dest, data)
    failed = target.failed_ids()
    for trial_id in failed & set(kept):  # finished now: no failure (as a run)
        with _io_errors(f"removing {target.failures / trial_id}.txt"):
            (target.failures / f"{trial_id}.txt").unlink(missing_ok=True)
    return failed - set(kept)


def _merge_ledgers(target: RunStore, sources: list[Path]) -> None:
    """The sources' spend ledgers, so the merged run's budget counts what the shards spent.
    An entry keeps its own name (each invocation's is unique: merging a source again, a
    moved one, or a merged folder with one of its shards meets the same entries, never
    counting them twice), the larger amount where both hold it (its later write)."""
    for src in sources:
        store = RunStore(src)
        if not store.spend.is_dir() or store.spend.resolve() == target.spend.resolve():
            continue
        for entry, _ in store.ledger_entries():
            record = store.ledger_record(store.spend / entry)
            have = target.ledger_entry(target.spend / entry)
            if record is not None and (have is None or have < record[0]):
                target.record_spend(entry.removesuffix(".json"), *record)


def _kind(st: os.stat_result) -> str:
    """What a file that is not a regular one is, in words."""
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):  # fmt: skip
        if test(st.st_mode):
            return name
    return "not a plain file"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _now_compact() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")


class SpendLedger:
    """One invocation's entry in its run's spend ledger (``RunStore.record_spend``): what
    ``spent`` says it has spent, written when it has grown, at most every ``every_s``
    seconds (and at the end, ``note(final=True)``), so a run killed outright loses at
    most that much of its account."""

    def __init__(
        self,
        store: RunStore,
        spent: Callable[[], float],
        every_s: float = 0.5,
        by_model: Callable[[], Mapping[str, float]] | None = None,
    ):
        self.store = store
        self.spent = spent
        self.by_model = by_model  # what it has spent on each model (max_cost_usd's account)
        self.every_s = every_s
        self.name = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._written = 0.0
        # never written: the first growth is written at once (0.0 held it back while the
        # machine had been up less than every_s: time.monotonic counts from boot)
        self._at = -math.inf

    def note(self, final: bool = False) -> None:
        usd = self.spent()
        now = time.monotonic()
        if usd > self._written and (final or now - self._at >= self.every_s):
            self.store.record_spend(self.name, usd, self.by_model() if self.by_model else None)
            self._written, self._at = usd, now
