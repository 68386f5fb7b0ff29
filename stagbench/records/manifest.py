"""The manifest of a results folder: which spec ran, how far it got, and why it stopped.

It is versioned like a transcript. Folders written before it had a version (v0: a plain
JSON object without ``format``) are read through ``stagbench.records.reader.migrate_manifest``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

MANIFEST_FORMAT = "stagbench.manifest"
MANIFEST_VERSION = 1

RunStatus = Literal["new", "running", "complete", "incomplete"]


class Manifest(BaseModel):
    """``RUN_DIR/manifest.json``. Only the spec name and hash say what the folder holds;
    the rest records how the last run went."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["stagbench.manifest"] = "stagbench.manifest"
    version: int = MANIFEST_VERSION
    spec_name: str
    spec_hash: str
    stagbench_version: str
    n_trials: int
    created: str
    updated: str | None = None
    status: RunStatus = "new"
    finished_trials: int = 0
    failed_trials: int = 0
    #: why the last run stopped early (a budget, a full disk, a signal), if it did
    stopped: str | None = None
    last_run_wall_s: float | None = None
    #: the shard (``i/n``) the last run covered, and how many trials that was
    shard: str | None = None
    shard_trials: int | None = None
    workers: int | None = None
    merged_from: list[str] | None = None
    #: where the transcripts came from when they were not run here (``import bct``)
    imported_from: list[str] | None = None
