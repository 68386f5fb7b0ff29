"""Import another harness's logs as a normal stagbench results folder.

An importer is one function registered under a name (``@importer("bct", "...")``): it
reads source folders and returns an ``Imported`` (trial records, transcripts, the files it
could not convert and why, and notes). ``write_imported`` turns that into a results
folder like any run's (``manifest.json`` with ``imported_from``, ``spec.toml`` describing
the import, ``trials.jsonl``, ``transcripts/``, ``failures/``), so ``stagbench report``
reads it with nothing special. Every transcript is checked before it is written: it must
pass the strict reader and re-derive from its actions with the game engine
(``games.audit``); one that does not is a recorded failure, never a written file.

Another harness's logs (TextArena, Inspect) are one more module registering itself here,
or a plugin of the ``stagbench`` entry-point group.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

import stagbench
from stagbench.errors import StagbenchError, StoreError, TranscriptError
from stagbench.games.audit import audit_events
from stagbench.records import Manifest, Transcript, TrialSpec, validate_events
from stagbench.registry import Registry


class ImporterError(StagbenchError):
    """Source logs that cannot be imported (the message says which file and why)."""


@dataclass
class Imported:
    """What an importer read: one record and one transcript per converted trial, and the
    source files it could not convert (trial id or file, source path, why)."""

    harness: str
    sources: list[Path]
    spec_name: str
    trials: list[TrialSpec] = field(default_factory=list)
    transcripts: list[Transcript] = field(default_factory=list)
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    #: the ``[imported]`` table of spec.toml: what was kept and what was not
    notes: dict[str, Any] = field(default_factory=dict)


ImportFn = Callable[[list[Path]], Imported]


@dataclass(frozen=True)
class ImporterKind:
    name: str
    convert: ImportFn
    description: str


def _builtins() -> None:
    importlib.import_module("stagbench.runs.importers.bct")


IMPORTERS: Registry[ImporterKind] = Registry("importer", ImporterError, _builtins)


def importer(name: str, description: str) -> Callable[[ImportFn], ImportFn]:
    """Register a converter: ``@importer("bct", "Byzantine Cheap Talk results.json")``."""

    def register(fn: ImportFn) -> ImportFn:
        IMPORTERS.register(name, ImporterKind(name, fn, description))
        return fn

    return register


def check_transcript(t: Transcript) -> list[str]:
    """Why a converted transcript may not be written: the strict reader's and the game
    engine's objections (empty when it passes both)."""
    events = [orjson.loads(line) for line in t.lines()]
    try:
        validate_events(events, t.trial_id)
    except TranscriptError as exc:
        return [str(exc)]
    return audit_events(events)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(str(v), ensure_ascii=False)


def spec_text(result: Imported) -> str:
    """spec.toml of an imported folder: what was imported, from where, and what the source
    did not keep. It describes the import; it is not a runnable spec."""
    lines = [
        "# Written by `stagbench import`: it describes imported logs and cannot be run.",
        f"name = {_toml_value(result.spec_name)}",
        f"description = {_toml_value('imported from ' + ', '.join(map(str, result.sources)))}",
        "",
        "[imported]",
        f"harness = {_toml_value(result.harness)}",
        f"sources = {_toml_value([str(s) for s in result.sources])}",
    ]
    tables: dict[str, dict[str, Any]] = {}
    for key, value in result.notes.items():
        if isinstance(value, dict):
            tables[key] = value
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for key, table in tables.items():
        lines += ["", f"[imported.{key}]"]
        lines += [f"{_toml_value(k)} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def write_imported(result: Imported, out: str | Path) -> Manifest:
    """Write ``result`` as a results folder at ``out`` (which must not hold one already)."""
    from stagbench.runs.store import RunStore, atomic_write

    store = RunStore(out)
    if store.manifest_path.exists() or (
        store.transcripts.exists() and any(store.transcripts.iterdir())
    ):
        raise StoreError(f"{store.root} already holds a results folder: import into a new --out")
    written: list[Transcript] = []
    failures = list(result.failures)
    for t in result.transcripts:
        problems = check_transcript(t)
        if problems:
            failures.append((t.trial_id, "", "; ".join(problems[:3])))
        else:
            written.append(t)
    try:
        for d in (store.root, store.transcripts, store.failures):
            d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create {store.root}: {exc}") from exc
    text = "".join(t.model_dump_json() + "\n" for t in result.trials)
    atomic_write(store.root / "spec.toml", spec_text(result))
    atomic_write(store.root / "trials.jsonl", text)
    for t in written:
        store.write(t)
    for ident, source, why in failures:
        store.record_failure(ident, f"{why}\nsource: {source}" if source else why)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    manifest = Manifest(
        spec_name=result.spec_name,
        spec_hash=hashlib.sha256(text.encode()).hexdigest()[:16],
        stagbench_version=stagbench.__version__,
        n_trials=len(result.trials),
        created=now,
        updated=now,
        status="complete" if not failures else "incomplete",
        finished_trials=len(written),
        failed_trials=len(failures),
        imported_from=[str(s) for s in result.sources],
    )
    store.write_manifest(manifest)
    return manifest


def import_logs(harness: str, sources: list[Path], out: str | Path) -> tuple[Imported, Manifest]:
    """Convert ``sources`` with the named importer and write the results folder."""
    if not sources:
        raise ImporterError("name at least one source folder")
    for src in sources:
        if not src.exists():
            raise ImporterError(f"source not found: {src}")
    kind = IMPORTERS.get(harness)
    result = kind.convert([Path(s) for s in sources])
    return result, write_imported(result, out)
