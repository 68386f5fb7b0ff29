"""Benchmark: where a chunk of the first read spends its CPU, stage by stage.

The scan (``analysis.scan``) reads each transcript once in a worker and builds every view
of its chunk. This reads up to N transcripts of a run folder into memory (file reading is
not timed), then times, per chunk of ``scan.CHUNK`` files, each stage as the scan runs it:
parse (``load_events``), audit (``games.audit``), the agent-round lists (``trial_rows``),
the trial digest, the agents' rows (``scan._agents``, with its memo), the injection views
(``TrialViews.add``), then per chunk the agent-round frame, the agent-trials frame, the
full table as Arrow, the injection frames, and the Parquet parts written to a temporary
folder. It prints milliseconds of CPU per file for each stage (the best of ``--repeat``
passes: the machine is shared) and their sum. Run:
    python benchmarks/bench_first_read.py RUN_DIR [--files 4000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from stagbench.analysis import injection, scan, tables
from stagbench.analysis.lexical import DEFAULT
from stagbench.games.audit import audit_events
from stagbench.records import load_events


def one_pass(files: list[Path], blobs: list[bytes], out: Path) -> dict[str, float]:
    took: dict[str, float] = defaultdict(float)
    clock = time.process_time
    for start in range(0, len(files), scan.CHUNK):
        paths, data = files[start : start + scan.CHUNK], blobs[start : start + scan.CHUNK]
        cols = tables.RoundsColumns()
        inj = injection.TrialViews(honest_only=True, texts=False)
        made: dict[Any, list[dict[str, Any]]] = {}
        per_trial = []
        for path, blob in zip(paths, data, strict=True):
            t0 = clock()
            events = load_events(blob, str(path))
            t1 = clock()
            audit_events(events)
            t2 = clock()
            rows = tables.trial_rows(events, DEFAULT)
            t3 = clock()
            tables.trial_digest(events[0]["trial"])
            t4 = clock()
            agents = scan._agents(rows, DEFAULT, made)
            t5 = clock()
            inj.add(events, rows.rows["action"], rows.said)
            t6 = clock()
            cols.add(rows)
            per_trial.append((rows.const["trial_id"], agents))
            for name, (a, b) in {
                "parse": (t0, t1), "audit": (t1, t2), "rows": (t2, t3), "digest": (t3, t4),
                "agents": (t4, t5), "injection": (t5, t6), "rows.add": (t6, clock()),
            }.items():  # fmt: skip
                took[name] += b - a
        t0 = clock()
        df = tables.finish_rounds(cols.frame())
        t1 = clock()
        at = scan._agent_trials(df, per_trial, DEFAULT)
        t2 = clock()
        full = tables.to_arrow(df)
        rounds = df.drop(columns=list(scan.TEXT_COLUMNS))
        t3 = clock()
        trials, inj_rows, messages = inj.frames()
        t4 = clock()
        views = {"full": full, "rounds": rounds, "agent_trials": at, "inj_trials": trials,
                 "inj_rows": inj_rows, "inj_messages": messages}  # fmt: skip
        scan._write_part(out / str(start), views)
        t5 = clock()
        for name, (a, b) in {
            "rounds frame": (t0, t1), "agents frame": (t1, t2), "arrow": (t2, t3),
            "injection frames": (t3, t4), "parquet": (t4, t5),
        }.items():  # fmt: skip
            took[name] += b - a
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--files", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    files = tables.transcript_files(args.run)[: args.files]
    blobs = [p.read_bytes() for p in files]
    gc.disable()  # as the scan builds a chunk (``scan._no_cyclic_gc``)
    best: dict[str, float] = {}
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            took = one_pass(files, blobs, Path(tmp))
        best = {k: min(v, best.get(k, v)) for k, v in took.items()}
    per_file = {k: 1000 * v / len(files) for k, v in best.items()}
    for name, ms in per_file.items():
        print(f"{name:>18} {ms:6.3f} ms/file")
    print(f"{'total':>18} {sum(per_file.values()):6.3f} ms/file ({len(files)} files)")


if __name__ == "__main__":
    main()
