"""Benchmark: the paper-scale design (720 trials) with scripted agents.

Prints trials/s and wall time for the orchestrator alone (no LLM), at a few concurrency
levels, writing real transcripts to a temporary folder. Run: python benchmarks/bench_scripted.py
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from stagbench.runs.orchestrator import run_trials
from stagbench.runs.runtime import event_loop_name, run_async
from stagbench.runs.spec import load_spec
from stagbench.runs.store import RunStore

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    spec, text = load_spec(ROOT / "experiments" / "paper_scripted.toml")
    trials = spec.trials()
    print(
        f"design: {spec.name}, {len(trials)} trials, {spec.game.rounds} rounds, "
        f"{spec.game.n_players} players; event loop {event_loop_name()}"
    )
    for concurrency in (1, 16, 128):
        tmp = Path(tempfile.mkdtemp(prefix="stagbench-bench-"))
        try:
            store = RunStore(tmp)
            store.open(spec, text, trials)
            start = time.perf_counter()
            summary = run_async(run_trials(spec, trials, store, concurrency=concurrency))
            wall = time.perf_counter() - start
            assert summary.completed == len(trials), summary
            size = sum(p.stat().st_size for p in store.transcript_paths())
            print(
                f"concurrency {concurrency:4d}: {wall:6.2f} s wall, "
                f"{len(trials) / wall:8.1f} trials/s, transcripts {size / 1e6:.1f} MB"
            )
        finally:
            shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
