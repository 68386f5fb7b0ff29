"""``stagbench run SPEC --workers K``: K processes share one run on one machine.

Python runs one core per process; past a few thousand calls a second the orchestrator
itself is the bottleneck, so a large run is split into K shards, each run by a child
``stagbench run --shard i/K`` writing into the same results folder (every transcript is
its own atomic file). Each child gets 1/K of every per-model limit (concurrency, request
and token rates, cost) and of the run budget, so together they keep the configured ones.
"""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from stagbench.errors import StagbenchError
from stagbench.runs.spec import load_spec
from stagbench.runs.store import RunStore

#: a child's exit code: 3 (stopped: budget, disk) outranks 1 (failed trials) outranks 0
SEVERITY = {0: 0, 1: 1, 3: 3}


def run_workers(
    spec_path: Path,
    out: Path | None,
    workers: int,
    concurrency: int,
    cache_dir: Path | None,
    no_cache: bool,
    console: Console,
) -> int:
    try:
        spec, text = load_spec(spec_path)
        trials = spec.trials()
        out_dir = out or Path("results") / spec.name
        store = RunStore(out_dir)
        store.open(spec, text, trials)
    except StagbenchError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        return 2
    start = time.perf_counter()
    base = [
        sys.executable,
        "-P",
        "-m",
        "stagbench.cli",
        "run",
        str(spec_path),
        "--out",
        str(out_dir),
    ]
    base += ["--concurrency", str(math.ceil(concurrency / workers)), "--share", str(workers)]
    base += ["--no-progress"]
    if no_cache:
        base.append("--no-cache")
    else:
        base += ["--cache-dir", str(cache_dir or out_dir / "cache")]
    logs = [out_dir / f"worker-{i}.log" for i in range(workers)]
    procs = []
    for i in range(workers):
        with open(logs[i], "wb") as log:
            procs.append(
                subprocess.Popen([*base, "--shard", f"{i}/{workers}"], stdout=log, stderr=log)
            )
    stopped_by: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        # SIGTERM (a cluster's time limit) or Ctrl-C: every worker stops cleanly and says so.
        stopped_by.append(signum)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while any(p.poll() is None for p in procs):
            time.sleep(0.1)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    codes = [p.returncode for p in procs]
    done, corrupt = store.scan()
    finished = len(done & {t.trial_id for t in trials})
    wall = time.perf_counter() - start
    store.update_manifest(
        status="complete" if finished == len(trials) else "incomplete",
        finished_trials=finished,
        shard=None,
        shard_trials=None,
        workers=workers,
        last_run_wall_s=round(wall, 3),
    )
    console.print(f"{workers} workers: {finished}/{len(trials)} trials finished in {wall:.1f}s")
    for i, code in enumerate(codes):
        if code != 0:
            console.print(f"[red]worker {i} exited with {code}[/]; see {logs[i]}")
    for line in store.location_lines():
        console.print(line)
    if stopped_by:
        console.print(
            f"[bold red]run stopped:[/] interrupted by {signal.Signals(stopped_by[0]).name}"
        )
        return 128 + stopped_by[0]
    return max(codes, key=lambda c: SEVERITY.get(c, 2))
