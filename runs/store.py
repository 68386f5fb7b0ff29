"""The results folder: one transcript file per trial, written atomically, plus a manifest.

Layout::

    RUN_DIR/manifest.json        what ran, with which spec, how far it got
    RUN_DIR/spec.toml            the spec as given
    RUN_DIR/trials.jsonl         every trial of the design, one TrialSpec a line
    RUN_DIR/transcripts/ID.jsonl one finished trial (written whole, then renamed)
    RUN_DIR/failures/ID.txt      why a trial failed (it is retried on the next run)
    RUN_DIR/quarantine/          transcripts found corrupt, moved aside and re-run

A transcript exists only once its trial is finished, so a killed run loses nothing
finished, and re-running the same spec into the same folder runs only what is missing.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import stagbench
from stagbench.errors import StoreError, TranscriptError
from stagbench.games.audit import audit_events
from stagbench.records import (
    Manifest,
    Transcript,
    read_events,
    read_manifest,
    validate_events,
)
from stagbench.runs.spec import ExperimentSpec, TrialSpec

#: Settings that change how a run is carried out, not what it measures: a resumed run may
#: change them (a new endpoint, a higher budget, other rate limits).
OPERATIONAL = {"model_settings", "budget_usd", "description", "analysis"}


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
    events = read_events(path)
    problems = audit_events(events)
    if problems:
        raise TranscriptError(f"{path} is inconsistent: {'; '.join(problems[:3])}")
    return validate_events(events, str(path))


def atomic_write(path: Path, text: str) -> None:
    """Write a file so that readers see either nothing or all of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with _io_errors(f"writing {path}"):
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()


class RunStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.transcripts = self.root / "transcripts"
        self.failures = self.root / "failures"
        self.quarantine = self.root / "quarantine"
        self.manifest_path = self.root / "manifest.json"

    # -- setup ---------------------------------------------------------------
    def open(self, spec: ExperimentSpec, spec_text: str, trials: list[TrialSpec]) -> None:
        """Create the folder for this spec, or check it belongs to this spec (resume)."""
        digest = spec_hash(spec)
        existing = self.read_manifest()
        if existing is not None and existing.spec_hash != digest:
            raise StoreError(
                f"{self.root} holds results of another spec ({existing.spec_name!r}, "
                f"hash {existing.spec_hash}); this spec hashes to {digest}. "
                "Use another --out folder."
            )
        with _io_errors(f"creating {self.root}"):
            for d in (self.root, self.transcripts, self.failures):
                d.mkdir(parents=True, exist_ok=True)
        for stale in self.transcripts.glob(".*.tmp"):  # left by a killed writer
            if not _writer_alive(stale):  # never the file of a live worker sharing the folder
                stale.unlink(missing_ok=True)
        if existing is None:
            atomic_write(self.root / "spec.toml", spec_text)
            atomic_write(
                self.root / "trials.jsonl", "".join(t.model_dump_json() + "\n" for t in trials)
            )
        ident = {
            "spec_name": spec.name,
            "spec_hash": digest,
            "stagbench_version": stagbench.__version__,
            "n_trials": len(trials),
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
        return self._write_text(transcript.trial_id, transcript.to_jsonl())

    async def write_async(self, transcript: Transcript) -> Path:
        """``write`` with the file system work (open, fsync, rename) on a worker thread,
        so the event loop keeps serving model calls while the disk catches up."""
        text = transcript.to_jsonl()
        return await asyncio.to_thread(self._write_text, transcript.trial_id, text)

    def _write_text(self, trial_id: str, text: str) -> Path:
        path = self.path_for(trial_id)
        atomic_write(path, text)
        failure = self.failures / f"{trial_id}.txt"
        if failure.exists():
            failure.unlink()
        return path

    def record_failure(self, trial_id: str, error: str) -> None:
        atomic_write(self.failures / f"{trial_id}.txt", error.rstrip() + "\n")

    def scan(self) -> tuple[set[str], list[tuple[str, str]]]:
        """Ids of valid finished transcripts; corrupt ones are moved to quarantine/ and
        returned as (file name, reason) so they are reported and re-run."""
        done: set[str] = set()
        corrupt: list[tuple[str, str]] = []
        if not self.transcripts.exists():
            return done, corrupt
        for path in sorted(self.transcripts.glob("*.jsonl")):
            try:
                t = read_checked(path)
                if t.trial_id != path.stem:
                    raise TranscriptError(f"{path} holds trial {t.trial_id}, not {path.stem}")
                done.add(t.trial_id)
            except TranscriptError as exc:
                if not path.exists():
                    continue  # another worker sharing the folder quarantined it first
                corrupt.append((path.name, str(exc)))
                with _io_errors(f"quarantining {path}"):
                    self.quarantine.mkdir(exist_ok=True)
                    try:
                        os.replace(path, self.quarantine / f"{path.name}.{_now_compact()}")
                    except FileNotFoundError:
                        continue  # the same race, a moment later
        return done, corrupt

    def location_lines(self) -> list[str]:
        """Where the results are, as every run command prints it at its end."""
        return [f"Results: {self.root.resolve()}", f"Transcripts: {self.transcripts.resolve()}"]

    def transcript_paths(self) -> list[Path]:
        return sorted(self.transcripts.glob("*.jsonl"))


@dataclass
class MergeReport:
    copied: int = 0
    already: int = 0
    total: int = 0
    finished: int = 0
    corrupt: list[tuple[str, str]] = field(default_factory=list)


def merge_stores(out: str | Path, sources: list[Path]) -> MergeReport:
    """Copy the valid transcripts of several results folders of one spec into ``out``."""
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
    with _io_errors(f"creating {out}"):
        for d in (target.root, target.transcripts, target.failures):
            d.mkdir(parents=True, exist_ok=True)
        for name in ("spec.toml", "trials.jsonl"):
            if not (target.root / name).exists():
                shutil.copyfile(sources[0] / name, target.root / name)
    report = MergeReport()
    for src in sources:
        for path in RunStore(src).transcript_paths():
            dest = target.path_for(path.stem)
            if dest.exists():
                report.already += 1
                continue
            try:
                read_checked(path)
            except TranscriptError as exc:
                report.corrupt.append((str(path), str(exc)))
                continue
            atomic_write(dest, path.read_text(encoding="utf-8"))
            report.copied += 1
    report.total = sum(1 for _ in (target.root / "trials.jsonl").open(encoding="utf-8"))
    report.finished = len(target.transcript_paths())
    base = existing or manifests[0]
    target.write_manifest(
        base.model_copy(
            update={
                "status": "complete" if report.finished == report.total else "incomplete",
                "finished_trials": report.finished,
                "merged_from": [str(s) for s in sources],
                "updated": _now(),
            }
        )
    )
    return report


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _now_compact() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
