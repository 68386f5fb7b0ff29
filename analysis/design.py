"""The results folder checked against its design before anything is counted.

A results folder says what it should hold: ``manifest.json`` (which spec, how far the run
got), ``trials.jsonl`` (every trial of the design) and ``failures/`` (trials that failed,
with why). The report lists at its top, and leaves out of every statistic:

- missing trials: in the design, with no readable transcript;
- failed trials: a ``failures/<id>.txt`` and no transcript;
- foreign transcripts: a transcript of another spec, of a trial not in the design, of a
  trial whose record differs from the design's, a second copy of a trial, or a file named
  after another trial;
- corrupt or tampered transcripts: unreadable, or disagreeing with the game engine when
  its payoffs are re-derived from its recorded actions (``games.audit``).

Only the files' headers are compared (trial ids and content digests): linear in trials.
"""

from __future__ import annotations

import contextlib
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
from pydantic import ValidationError

from stagbench.analysis.tables import LoadReport, trial_digest
from stagbench.errors import StagbenchError, StoreError
from stagbench.records import (
    AnalysisSettings,
    Lexicon,
    Manifest,
    file_identity,
    in_shard,
    read_manifest,
    same_trial,
)


@dataclass
class DesignCheck:
    """What the folder holds against what its design says."""

    run: Path
    manifest: Manifest | None = None
    spec_name: str | None = None
    expected: int | None = None
    analysed: set[str] = field(default_factory=set)
    missing: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    foreign: list[tuple[str, str]] = field(default_factory=list)
    corrupt: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    imported: dict[str, Any] | None = None

    @property
    def problems(self) -> int:
        return len(self.missing) + len(self.failed) + len(self.foreign) + len(self.corrupt)

    def table(self) -> pd.DataFrame:
        """One row per problem: kind, trial or file, why."""
        rows = [("corrupt or tampered", Path(f).name, why) for f, why in self.corrupt]
        rows += [("foreign", Path(f).name, why) for f, why in self.foreign]
        rows += [("failed", tid, why) for tid, why in self.failed]
        rows += [("missing", tid, "in trials.jsonl, no transcript") for tid in self.missing]
        return pd.DataFrame(rows, columns=["problem", "trial or file", "why"])


#: where ``_expected_trials`` keeps the digests of a folder's trials.jsonl, in the
#: analysis cache (a file: the cache's eviction removes only its folders)
DIGESTS = Path(".cache") / "analysis" / "design-digests.json"
_DIGESTS_VERSION = 1


def _shard_of(manifest: Manifest | None) -> Callable[[str], bool] | None:
    """Whether a trial id is of the shard the folder's last run covered (``--shard i/n``:
    ``runs.spec.iter_shard``'s rule), for a folder of one shard (not a merged one); None
    for any other folder."""
    if manifest is None or not manifest.shard or manifest.merged_from:
        return None
    try:
        i, n = (int(x) for x in manifest.shard.split("/"))
    except ValueError:
        return None
    if n < 2:
        return None

    def mine(trial_id: str) -> bool:
        try:
            return in_shard(trial_id, i, n)
        except ValueError:
            return True  # an id of no shard's rule: counted as before

    return mine


def _reason(lines: list[str]) -> str:
    """Why a trial failed, from its failure file's lines: the first (a run writes the
    error there, then its traceback). A file of a bare Python traceback (written before)
    gives its error: the first line of the last exception's message (its first line,
    "Traceback (most recent call last):", was every failure's reason in the report, rt42
    F5; a message's later lines, a note or pydantic's link are no reason, rt43 F8)."""
    said = [line for line in lines if line.strip()]
    if not said:
        return "(no reason recorded)"
    if not said[0].strip().lstrip("|+ ").startswith(_HEADERS):
        return said[0]
    found = ""
    indented = True  # the line before: a frame of the traceback
    for line in said[1:]:
        plain = line.strip().lstrip("|+ ").strip()
        if line[:1].isspace() and not plain.startswith(_ERROR_START):
            indented = True
            continue
        if indented and not plain.startswith(_CHAINED):
            found = plain  # a message's first line, after the frames above it
        indented = plain.startswith(_CHAINED)
    return found or said[-1].strip()


#: lines of a chained traceback that are no error, and the start of an exception group's
_CHAINED = ("During handling of the above", "The above exception was", "Traceback (most")
_ERROR_START = ("ExceptionGroup:", "BaseExceptionGroup:")
_HEADERS = ("Traceback (most recent call last)", "Exception Group Traceback")


def _expected_trials(path: Path, cache: Path | None = None) -> dict[str, str] | None:
    """trial id -> content digest of every trial in ``trials.jsonl`` (None if absent).

    With ``cache``, the digests are kept there under the file's identity (size, inode,
    modification and status-change times), so a second command on an unchanged design
    reads them instead of hashing every trial again (about 12 s at a million trials)."""
    try:
        identity = file_identity(path.stat())
        kept = _kept_digests(cache, identity) if cache is not None else None
        if kept is not None:
            return kept
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc}") from exc
    out = _digests(path, raw)
    if cache is not None:
        try:  # kept only if the file did not change while it was read
            unchanged = file_identity(path.stat()) == identity
        except OSError:
            unchanged = False
        if unchanged:
            _keep_digests(cache, identity, out)
    return out


def _kept_digests(cache: Path, identity: str) -> dict[str, str] | None:
    """The digests kept for a trials.jsonl of this identity; None if none or damaged."""
    try:
        data = orjson.loads(cache.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("version") != _DIGESTS_VERSION:
        return None
    digests = data.get("digests")
    if data.get("identity") != identity or not isinstance(digests, dict):
        return None
    if not all(type(k) is str and type(v) is str for k, v in digests.items()):
        return None
    return digests


def _keep_digests(cache: Path, identity: str, digests: dict[str, str]) -> None:
    """Write the digests for the next command (atomically; a read-only folder keeps none)."""
    data = {"version": _DIGESTS_VERSION, "identity": identity, "digests": digests}
    tmp = cache.with_name(f".{cache.name}.tmp{os.getpid()}")  # as the scan's parts
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(orjson.dumps(data))
        os.replace(tmp, cache)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _digests(path: Path, raw: bytes) -> dict[str, str]:
    """trial id -> content digest of each trial record (a line) of ``raw``, in order."""
    out: dict[str, str] = {}
    for no, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            trial = orjson.loads(line)
            out[str(trial["trial_id"])] = trial_digest(trial)
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise StoreError(f"{path} line {no} is not a trial record: {exc}") from exc
    return out


def check(run: str | Path, load: LoadReport) -> DesignCheck:
    """Compare what was read (``load.read``) with the folder's manifest, design and
    failures. Files that are not part of the design go to ``foreign``; ``analysed`` holds
    the trial ids whose rows may be counted."""
    root = Path(run)
    if root.is_file():
        root = root.parent
    if root.name == "transcripts" and not (root / "transcripts").is_dir():
        root = root.parent
    out = DesignCheck(run=root, corrupt=list(load.corrupt))
    try:
        out.manifest = read_manifest(root / "manifest.json")
    except StagbenchError as exc:
        out.notes.append(f"the manifest cannot be read ({exc}); the design is not checked")
    expected = _expected_trials(root / "trials.jsonl", root / DIGESTS)
    if out.manifest is None and expected is None:
        out.notes.append(
            "no manifest.json or trials.jsonl: the transcripts are analysed as found, "
            "without checking them against a design"
        )
    out.spec_name = out.manifest.spec_name if out.manifest else None
    out.expected = len(expected) if expected is not None else None
    seen: dict[str, str] = {}
    for path, trial_id, spec_name, digest in sorted(load.read):
        name = _stem(path)
        why = None
        if out.spec_name is not None and spec_name != out.spec_name:
            why = f"a transcript of spec {spec_name!r}, not {out.spec_name!r}"
        elif name != trial_id:
            why = f"the file holds trial {trial_id}, not {name}"
        elif trial_id in seen:
            why = f"a second copy of trial {trial_id} ({Path(seen[trial_id]).name})"
        elif expected is not None and trial_id not in expected:
            why = f"trial {trial_id} is not in this folder's design (trials.jsonl)"
        elif (
            expected is not None
            and expected[trial_id] != digest
            and not _recheck(root, path, trial_id)
        ):
            why = f"trial {trial_id}'s record differs from the design's"
        if why:
            out.foreign.append((path, why))
            continue
        seen[trial_id] = path
        out.analysed.add(trial_id)
    # a trial id held by a file left out as well as by one analysed (a copy under another
    # name): the views hold trial ids, not files, so the two files' rows cannot be told
    # apart, and counting the id would count both: neither is analysed
    left = {p for p, _ in out.foreign}
    doubled = {t for p, t, _, _ in load.read if p in left and t in out.analysed}
    for trial_id in sorted(doubled):
        out.foreign.append(
            (seen[trial_id], f"trial {trial_id} is also held by a file left out (listed "
             "here): their rows cannot be told apart, so neither is analysed")
        )  # fmt: skip
        out.analysed.discard(trial_id)
    if out.spec_name is None and seen:
        names = {s for _, _, s, _ in load.read}
        out.spec_name = sorted(names)[0] if len(names) == 1 else None
    failures = root / "failures"
    failed_ids = set()
    if failures.is_dir():
        for f in sorted(failures.glob("*.txt")):
            if f.stem in out.analysed:
                continue
            try:
                lines = f.read_text(encoding="utf-8", errors="replace").strip().splitlines()
            except OSError as exc:
                lines = [f"(cannot read {f.name}: {exc})"]
            out.failed.append((f.stem, _reason(lines)[:300]))
            failed_ids.add(f.stem)
    corrupt_ids = {Path(f).stem for f, _ in load.corrupt}
    if expected is not None:
        out.missing = sorted(
            t
            for t in expected
            if t not in out.analysed
            and t not in failed_ids
            and t not in corrupt_ids
            and t not in doubled
        )
        mine = _shard_of(out.manifest)
        if mine is not None:  # a shard's folder: the other shards' trials are no one's loss
            elsewhere = [t for t in out.missing if not mine(t)]
            if elsewhere:
                out.missing = [t for t in out.missing if mine(t)]
                assert out.manifest is not None
                out.notes.append(
                    f"this folder ran shard {out.manifest.shard} of the design: "
                    f"{len(elsewhere)} of its trials belong to the other shards and are not "
                    "counted missing (merge the shards' folders to analyse the whole design)"
                )
    if out.manifest is not None and out.manifest.stopped:
        out.notes.append(f"the last run stopped early: {out.manifest.stopped}")
    out.imported = _imported(root)
    return out


def _stem(path: str) -> str:
    """``Path(path).stem`` without making a Path (a large folder has 100,000s of them):
    the file name without its last suffix (a leading dot or a trailing one is no suffix)."""
    name = os.path.basename(path)
    dot = name.rfind(".")
    return name[:dot] if 0 < dot < len(name) - 1 else name


def _recheck(root: Path, path: str, trial_id: str) -> bool:
    """The slow comparison, for the rare digest mismatch: validate both records."""
    try:
        head = orjson.loads(Path(path).read_bytes().split(b"\n", 1)[0])
        mine = orjson.dumps(head["trial"])
        for line in (root / "trials.jsonl").read_bytes().splitlines():
            if trial_id.encode() in line:
                rec = orjson.loads(line)
                if rec.get("trial_id") == trial_id:
                    return same_trial(mine, orjson.dumps(rec))
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
        return False
    return False


def _spec_table(root: Path) -> dict[str, Any]:
    path = root / "spec.toml"
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}


def _imported(root: Path) -> dict[str, Any] | None:
    table = _spec_table(root).get("imported")
    return table if isinstance(table, dict) else None


def lexicon(run: str | Path) -> Lexicon:
    """The vocabularies of the folder's spec (its ``[analysis]`` table), or the defaults.
    A table that does not validate is a clear error, not a silent default."""
    root = Path(run)
    if root.is_file():
        return Lexicon()
    table = _spec_table(root).get("analysis")
    if table is None:
        return Lexicon()
    try:
        return AnalysisSettings.model_validate(table).lexicon()
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise StoreError(f"{root / 'spec.toml'} [analysis] {where}: {err['msg']}") from exc
