"""``stagbench run SPEC --workers K``: K processes share one run on one machine.

Python runs one core per process; past a few thousand calls a second the orchestrator
itself is the bottleneck, so a large run is split into K shards, each run by a child
``stagbench run --shard i/K`` writing into the same results folder (every transcript is
its own atomic file). Each child gets 1/K of every per-model limit (concurrency, request
and token rates, cost) and of the run budget, so together they keep the configured ones.

The parent holds the folder's lock and hands its file descriptor to the workers, so no
other run can start in the folder until the last worker has ended. The workers stop when
the parent dies, even by SIGKILL (``watch_parent``): nothing runs, and pays, unwatched.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from stagbench.agents.models.model import usd
from stagbench.errors import StagbenchError
from stagbench.runs.spec import ExperimentSpec, load_spec
from stagbench.runs.store import RunLock, RunStore

#: Linux prctl option: the signal the kernel sends a process when its parent dies
PR_SET_PDEATHSIG = 1
WATCH_INTERVAL_S = 0.5


def _stop_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)  # the run's own clean stop (trials in flight re-run)


def watch_parent(parent: int, on_death: Callable[[], None] = _stop_self) -> None:
    """Call ``on_death`` (by default: stop this run as SIGTERM does) when process ``parent``
    is no longer this process's parent. On Linux the kernel signals at once
    (PR_SET_PDEATHSIG); everywhere a thread also checks twice a second."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # it died before the watch was set
        on_death()
        return

    def poll() -> None:
        while os.getppid() == parent:
            time.sleep(WATCH_INTERVAL_S)
        on_death()

    threading.Thread(target=poll, name="stagbench-parent-watch", daemon=True).start()


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
    err: Console | None = None,
) -> int:
    """Run the spec in ``workers`` processes; progress on ``console``, errors on ``err``."""
    err = err or console
    try:
        spec, text = load_spec(spec_path)
        out_dir = out or Path("results") / spec.name
        store = RunStore(out_dir)
        lock = store.lock(spec)
    except StagbenchError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        return 2
    with lock:
        return _run_workers(spec, text, spec_path, store, lock, workers, concurrency,
                            cache_dir, no_cache, console, err)  # fmt: skip


def _run_workers(
    spec: ExperimentSpec,
    text: str,
    spec_path: Path,
    store: RunStore,
    lock: RunLock,
    workers: int,
    concurrency: int,
    cache_dir: Path | None,
    no_cache: bool,
    console: Console,
    err: Console,
) -> int:
    out_dir = store.root
    try:
        store.open(spec, text)
    except StagbenchError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
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
    base += ["--no-progress", "--worker-of", str(os.getpid())]
    if spec.budget_usd is not None:  # counted once here, for every worker alike
        base += ["--spent-before", repr(store.spent_before_usd())]
    # what earlier invocations spent on each model (max_cost_usd), read once for them all
    base += ["--spent-before-models", json.dumps(store.ledger_by_model())]
    if no_cache:
        base.append("--no-cache")
    else:
        base += ["--cache-dir", str(cache_dir or out_dir / "cache")]
    logs = [out_dir / f"worker-{i}.log" for i in range(workers)]
    procs = []
    inherit = () if lock.fd is None else (lock.fd,)
    for i in range(workers):
        with open(logs[i], "wb") as log:
            procs.append(
                subprocess.Popen(
                    [*base, "--shard", f"{i}/{workers}"], stdout=log, stderr=log, pass_fds=inherit
                )
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
    finished = len(done)  # the folder holds this spec's trials only
    total = spec.n_trials
    failed = store.failed_ids() - done
    wall = time.perf_counter() - start
    store.update_manifest(
        status="complete" if finished == total else "incomplete",
        finished_trials=finished,
        failed_trials=len(failed),
        shard=None,
        shard_trials=None,
        workers=workers,
        last_run_wall_s=round(wall, 3),
    )
    console.print(f"{workers} workers: {finished}/{total} trials finished in {wall:.1f}s")
    for i, code in enumerate(codes):
        if code != 0:
            err.print(f"[red]worker {i} exited with {code}[/]; see {escape(str(logs[i]))}")
    if 3 in codes and spec.budget_usd is not None:  # a budget (or the disk) stopped a worker
        err.print(
            f"the run has spent {usd(store.spent_before_usd())} of its budget_usd "
            f"{usd(spec.budget_usd)} (each worker stops at its share of what was left)"
        )
    for line in store.location_lines():
        console.print(escape(line))
    if failed:
        err.print(f"[bold red]error:[/] {escape(store.failure_line(len(failed), total))}")
    if stopped_by:
        err.print(f"[bold red]run stopped:[/] interrupted by {signal.Signals(stopped_by[0]).name}")
        return 128 + stopped_by[0]
    return max(codes, key=lambda c: SEVERITY.get(c, 2))
