"""Benchmark: orchestrator throughput against a fixed-latency model, and prompt tokens vs rounds.

1. The 720-trial design with every agent an LLM (one model, ``mock/random``, answering after
   a fixed latency, so one limit binds every call). For each model concurrency limit M,
   the bound is M / latency calls per second;
   we report achieved calls/s, the ratio to that bound, and the orchestrator's CPU per call,
   split by component: a statistical profiler in the process (SIGPROF on the process's CPU
   clock, a sample every few milliseconds of CPU) files each sample under the innermost
   stagbench (or pydantic) function running, and the shares of the samples split the
   measured CPU. The mock model's own work (what a real server would spend) is one of them.
   The ratio comes from a plain pass; the split from a second pass under the sampler.
2. Input tokens per trial as the number of rounds grows (the real templates, rendered on a
   synthetic course of play), showing the per-call prompt grows linearly with the rounds.

3. Client CPU per call of the ``sdk`` and ``http`` clients for OpenAI-compatible servers.

Run: python benchmarks/bench_llm.py [--latency 0.05] [--limits 64 256] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from pathlib import Path
from types import FrameType

from stagbench.agents.models.base import ChatMessage, GenerateConfig
from stagbench.agents.models.pool import ModelPool
from stagbench.agents.models.providers.vllm import free_port
from stagbench.agents.models.settings import ModelSettings
from stagbench.agents.prompts import act_schema
from stagbench.records import ModelCallEvent, read_transcript
from stagbench.runs.estimate import estimate
from stagbench.runs.orchestrator import run_trials, trials_in_flight
from stagbench.runs.runtime import event_loop_name, run_async
from stagbench.runs.spec import parse_spec
from stagbench.runs.store import RunStore

ROOT = Path(__file__).resolve().parent.parent

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


#: (path fragment of the innermost stagbench module, component), first match wins
COMPONENTS = [
    ("runs/runtime.py", "event loop and tasks (asyncio, uvloop)"),
    ("agents/models/providers/mock.py", "mock model (the simulated server)"),
    ("agents/prompts.py", "prompt rendering"),
    ("agents/llm.py", "agent: config, parse, call record"),
    ("agents/models/", "model wrapper: limits, deadlines, usage"),
    ("runs/trial.py", "trial loop: views, events"),
    ("games/", "trial loop: views, events"),
    ("records/", "serialisation and store"),
    ("runs/store.py", "serialisation and store"),
]
SETUP = "trial setup and orchestrator"
LOOP = "event loop and tasks (asyncio, uvloop)"
PYDANTIC = "pydantic validation (records)"
DUMP = "serialisation and store"


def component(frame: FrameType | None) -> str:
    """The component a sample belongs to: the innermost stagbench or pydantic frame decides
    (standard-library frames count for their caller); no such frame is the event loop."""
    while frame is not None:
        path = frame.f_code.co_filename.replace(os.sep, "/")
        if "/pydantic/" in path:
            return DUMP if frame.f_code.co_name.startswith("model_dump") else PYDANTIC
        _, hit, rest = path.rpartition("/stagbench/")
        if hit:
            return next((name for part, name in COMPONENTS if rest.startswith(part)), SETUP)
        frame = frame.f_back
    return LOOP


class Sampler:
    """Counts samples per component while active: SIGPROF fires on the process's CPU
    clock (the kernel delivers it at its tick, every few ms of CPU), so idle waiting for
    the model costs nothing and is never sampled."""

    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self.counts: Counter[str] = Counter()

    def _sample(self, signum: int, frame: FrameType | None) -> None:
        self.counts[component(frame)] += 1

    def __enter__(self) -> Sampler:
        self._old = signal.signal(signal.SIGPROF, self._sample)
        signal.setitimer(signal.ITIMER_PROF, self.interval, self.interval)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        signal.signal(signal.SIGPROF, self._old)

    def table(self, cpu_per_call: float) -> list[str]:
        total = sum(self.counts.values())
        if not total:
            return ["  (no samples)"]
        rows = [f"  CPU per call by component ({total} samples):"]
        for name, n in self.counts.most_common():
            share = n / total
            rows.append(f"    {1e3 * cpu_per_call * share:7.3f} ms  {100 * share:5.1f}%  {name}")
        return rows


async def throughput(limit: int, latency: float, components: bool = True) -> None:
    """The ratio and CPU per call from a plain pass; with ``components``, a second pass of
    the same design under the sampler (whose signal handler costs CPU of its own, so it
    would lower the ratio it measures) splits its CPU per call by component."""
    await _throughput(limit, latency, None)
    if components:
        await _throughput(limit, latency, Sampler())


async def _throughput(limit: int, latency: float, sampler: Sampler | None) -> None:
    spec = parse_spec(DESIGN.format(rounds=5, limit=limit, latency=latency))
    trials = spec.trials()
    in_flight = trials_in_flight(spec)  # what `stagbench run` takes by default
    tmp = Path(tempfile.mkdtemp(prefix="stagbench-bench-"))
    try:
        store = RunStore(tmp)
        store.open(spec, "", trials)
        pool = ModelPool(spec.model_settings, cache_dir=None)
        cpu0, t0, times0 = time.process_time(), time.perf_counter(), os.times()
        main0 = time.thread_time()
        if sampler is not None:
            sampler.__enter__()
        try:
            summary = await run_trials(spec, trials, store, pool=pool, concurrency=in_flight)
        finally:
            if sampler is not None:
                sampler.__exit__()
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        times1, main = os.times(), time.thread_time() - main0
        calls = sum(u.calls for u in pool.usage().values())
        assert summary.completed == len(trials), summary.errors
        if sampler is not None:
            print(f"  sampled pass: CPU {1e3 * cpu / calls:.3f} ms/call in {wall:.2f}s")
            print("\n".join(sampler.table(cpu / calls)))
            return
        bound = limit / latency
        ceiling = lockstep_ceiling(phase_calls(store), limit, in_flight, latency)
        # One core's worth of this CPU per call: the most calls/s the process could make
        # (the GIL runs its Python on one core at a time), as a share of the bound. The
        # ratio falls short of it well before: a reply waits in the event loop's queue
        # (holding its slot) while the loop is busy, and that wait grows steeply as the
        # loop's busy share (printed) nears 1.
        cpu_ceiling = calls / cpu / bound
        print(
            f"M={limit:5d}, {in_flight} trials in flight: {len(trials)} trials, {calls} calls "
            f"in {wall:6.2f}s -> "
            f"{calls / wall:8.1f} calls/s; bound {bound:8.1f}; ratio {calls / wall / bound:.2f} "
            f"(lockstep ceiling {ceiling:.2f}, one core's CPU ceiling {cpu_ceiling:.2f}); "
            f"CPU {1e3 * cpu / calls:.3f} ms/call "
            f"(user {1e3 * (times1.user - times0.user) / calls:.3f}, "
            f"system {1e3 * (times1.system - times0.system) / calls:.3f}; "
            f"event loop thread {1e3 * main / calls:.3f}, busy {main / wall:.0%} of the wall)"
        )
    finally:
        shutil.rmtree(tmp)


def phase_calls(store: RunStore) -> list[list[int]]:
    """For each trial, the model calls of each phase in order (talk phases, then act)."""
    out = []
    for path in store.transcript_paths():
        t = read_transcript(path)
        per: dict[tuple[int, int], int] = {}
        for e in t.events:
            if isinstance(e, ModelCallEvent):
                key = (e.round, -1 if e.phase is None else e.phase)
                per[key] = per.get(key, 0) + 1
        # the act phase (-1) of a round comes after its talk phases
        out.append([per[k] for k in sorted(per, key=lambda k: (k[0], k[1] < 0, k[1]))])
    return out


def lockstep_ceiling(trials: list[list[int]], slots: int, in_flight: int, latency: float) -> float:
    """The best ratio any orchestrator could reach on these trials: an exact simulation with
    zero CPU of ``slots`` first-come-first-served slots, calls of exactly ``latency``, each
    trial's phases in lockstep and ``in_flight`` trials at a time. Below 1 because the
    run starts and ends with slots idle: a short run at a high limit cannot reach 1."""
    queue: deque[int] = deque()  # trial index per waiting call
    left = [0] * len(trials)  # calls of the current phase not yet done
    phase = [0] * len(trials)
    done: list[tuple[float, int]] = []  # (finish time, trial) heap
    pending = deque(range(len(trials)))
    busy, now, total = 0, 0.0, sum(map(sum, trials))

    def start_phase(i: int) -> None:
        left[i] = trials[i][phase[i]]
        queue.extend([i] * left[i])

    for _ in range(min(in_flight, len(trials))):
        start_phase(pending.popleft())
    while queue or done:
        while queue and busy < slots:
            heapq.heappush(done, (now + latency, queue.popleft()))
            busy += 1
        now, i = heapq.heappop(done)
        busy -= 1
        left[i] -= 1
        if left[i] == 0:
            phase[i] += 1
            if phase[i] < len(trials[i]):
                start_phase(i)
            elif pending:
                start_phase(pending.popleft())
    return total / now / (slots / latency)


def throughput_workers(limit: int, latency: float, workers: int) -> None:
    """The same design run by ``stagbench run --workers K`` (K processes sharing M)."""
    text = DESIGN.format(rounds=5, limit=limit, latency=latency)
    tmp = Path(tempfile.mkdtemp(prefix="stagbench-bench-"))
    try:
        spec_path = tmp / "spec.toml"
        spec_path.write_text(text)
        cmd = [sys.executable, "-P", "-m", "stagbench.cli", "run", str(spec_path),
               "--out", str(tmp / "out"), "--no-cache", "--workers", str(workers)]  # fmt: skip
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


CLIENT_MSGS = [
    ChatMessage(role="system", content="You are P1, one of 4 players. " * 40),
    ChatMessage(role="user", content="Past rounds: | 1 | stag | stag | hare | stag | " * 10),
]


def client_cpu(calls: int) -> None:
    """Client CPU per call of the two OpenAI-compatible clients against a loopback server
    (in its own process, keep-alive like vLLM's): what one process can drive against a
    fast local server, beyond the orchestrator's own cost."""
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "tests" / "fake_openai.py"),
            "--port",
            str(port),
            "--keep-alive",
        ]
    )
    try:
        os.environ["BENCH_BASE_URL"] = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        for client in ("sdk", "http"):
            run_async(_client_cpu(client, calls))
    finally:
        server.terminate()
        server.wait()


async def _client_cpu(client: str, calls: int) -> None:
    settings = ModelSettings(max_concurrency=16, options={"client": client})
    pool = ModelPool({"openai-api": settings}, cache_dir=None)
    model = pool.get("openai-api/bench/m")
    config = GenerateConfig(max_tokens=64, seed=1)
    schema = act_schema(True)
    try:
        await asyncio.gather(*(model.generate(CLIENT_MSGS, config, schema) for _ in range(50)))
        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(model.generate(CLIENT_MSGS, config, schema) for _ in range(calls)))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    finally:
        await pool.aclose()
    print(
        f"client {client:4s}: {1e3 * cpu / calls:.3f} ms client CPU per call "
        f"(one process saturates near {calls / cpu:,.0f} calls/s); loopback server answered "
        f"{calls / wall:,.0f} calls/s"
    )


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
    ap.add_argument("--limits", type=int, nargs="+", default=[64, 256, 1024])
    ap.add_argument("--workers", type=int, default=0, help="also run with K processes")
    ap.add_argument("--clients", type=int, default=2000, help="calls per client (0: skip)")
    ap.add_argument("--no-components", action="store_true", help="no CPU split (no sampling)")
    args = ap.parse_args()
    print(f"event loop: {event_loop_name()}")
    for limit in args.limits:
        run_async(throughput(limit, args.latency, not args.no_components))
        if args.workers > 1:
            throughput_workers(limit, args.latency, args.workers)
    if args.clients:
        client_cpu(args.clients)
    tokens_vs_rounds()


if __name__ == "__main__":
    main()
