"""Benchmark: orchestrator throughput against a fixed-latency model, and prompt tokens vs rounds.

1. The 720-trial design with every agent an LLM (one model, ``mock/random``, answering after
   a fixed latency, so one limit binds every call). For each model concurrency limit M,
   the bound is M / latency calls per second;
   we report achieved calls/s, the ratio to that bound, and the orchestrator's CPU per call.
2. Input tokens per trial as the number of rounds grows (the real templates, rendered on a
   synthetic course of play), showing the per-call prompt grows linearly with the rounds.

Run: python benchmarks/bench_llm.py [--latency 0.05] [--limits 64 256]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agents.models.pool import ModelPool  # noqa: E402
from runs.estimate import estimate  # noqa: E402
from runs.orchestrator import run_trials  # noqa: E402
from runs.runtime import event_loop_name, run_async  # noqa: E402
from runs.spec import parse_spec  # noqa: E402
from runs.store import RunStore  # noqa: E402

DESIGN = """
name = "bench-llm"
seed = 1
repetitions = 24
[game]
rounds = {rounds}
[agents]
max_reasks = 0
[factors]
models = ["mock/random"]
topologies = ["complete", "ring", "star(hub=0)"]
disclosures = ["explicit", "silent"]
adversaries = ["none", "deceiver(count=1)", "deceiver(count=2)", "soft(p=0.5,count=1)",
               "byzantine(count=1,placement=hub)"]
[model_settings.mock]
max_concurrency = {limit}
options = {{latency_s = {latency}}}
"""

TOKENS = """
name = "tokens"
[game]
rounds = {rounds}
[factors]
models = ["openai/gpt-4o-mini"]
topologies = ["complete"]
"""


async def throughput(limit: int, latency: float) -> None:
    spec = parse_spec(DESIGN.format(rounds=5, limit=limit, latency=latency))
    trials = spec.trials()
    tmp = Path(tempfile.mkdtemp(prefix="stagbench-bench-"))
    try:
        store = RunStore(tmp)
        store.open(spec, "", trials)
        pool = ModelPool(spec.model_settings, cache_dir=None)
        cpu0, t0 = time.process_time(), time.perf_counter()
        summary = await run_trials(spec, trials, store, pool=pool, concurrency=limit)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        calls = sum(u.calls for u in pool.usage().values())
        assert summary.completed == len(trials), summary.errors
        bound = limit / latency
        print(
            f"M={limit:5d}: {len(trials)} trials, {calls} calls in {wall:6.2f}s -> "
            f"{calls / wall:8.1f} calls/s; bound {bound:8.1f}; ratio {calls / wall / bound:.2f}; "
            f"CPU {1e3 * cpu / calls:.3f} ms/call"
        )
    finally:
        shutil.rmtree(tmp)


def throughput_workers(limit: int, latency: float, workers: int) -> None:
    """The same design run by ``stagbench run --workers K`` (K processes sharing M)."""
    text = DESIGN.format(rounds=5, limit=limit, latency=latency)
    tmp = Path(tempfile.mkdtemp(prefix="stagbench-bench-"))
    try:
        spec_path = tmp / "spec.toml"
        spec_path.write_text(text)
        cmd = [sys.executable, "-m", "runs.cli", "run", str(spec_path), "--out", str(tmp / "out"),
               "--no-cache", "--concurrency", str(limit), "--workers", str(workers)]  # fmt: skip
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
        wall = time.perf_counter() - t0
        calls = sum(
            line.count(b'"type":"model_call"')
            for p in (tmp / "out" / "transcripts").glob("*.jsonl")
            for line in p.read_bytes().splitlines()
        )
        bound = limit / latency
        print(
            f"M={limit:5d}, {workers} processes: {calls} calls in {wall:6.2f}s (process start "
            f"included) -> {calls / wall:8.1f} calls/s; bound {bound:8.1f}; "
            f"ratio {calls / wall / bound:.2f}"
        )
    finally:
        shutil.rmtree(tmp)


def tokens_vs_rounds() -> None:
    print("input tokens per trial (all 4 seats LLM, complete graph, explicit):")
    for rounds in (1, 2, 5, 10, 20):
        spec = parse_spec(TOKENS.format(rounds=rounds))
        (row,) = estimate(spec)
        per_call = row.input_tokens / row.calls
        print(
            f"  rounds {rounds:3d}: {row.input_tokens:8,d} input tokens/trial, "
            f"{per_call:7.1f} per call, {row.input_tokens / rounds:8.1f} per round"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--limits", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--workers", type=int, default=0, help="also run with K processes")
    args = ap.parse_args()
    print(f"event loop: {event_loop_name()}")
    for limit in args.limits:
        run_async(throughput(limit, args.latency))
        if args.workers > 1:
            throughput_workers(limit, args.latency, args.workers)
    tokens_vs_rounds()


if __name__ == "__main__":
    main()
