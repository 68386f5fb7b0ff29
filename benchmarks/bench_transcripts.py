"""Transcript format v1 against v2 on the 720-trial LLM benchmark design (mock model):
bytes per trial, and the CPU of serialising a finished trial per model call.

v2 stores each seat's system prompt once (in its ``SeatInfo``); v1 repeated it in every
``model_call``. The v1 form of each transcript is made from the same records with the
system prompt put back into every call, and serialised by the same code, so the figures
compare the formats, not two builds.

Run: python benchmarks/bench_transcripts.py
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path

from stagbench.agents.models.pool import ModelPool
from stagbench.records import ModelCallEvent, Transcript, read_transcript
from stagbench.runs.orchestrator import run_trials
from stagbench.runs.spec import parse_spec
from stagbench.runs.store import RunStore

DESIGN = """
name = "bench-transcripts"
seed = 1
repetitions = 24
[game]
rounds = 5
[agents]
max_reasks = 0
[factors]
models = ["mock/random"]
topologies = ["complete", "ring", "star(hub=0)"]
disclosures = ["explicit", "silent"]
adversaries = ["none", "deceiver(count=1)", "deceiver(count=2)", "soft(p=0.5,count=1)",
               "byzantine(count=1,placement=hub)"]
"""


def as_v1(t: Transcript) -> Transcript:
    """The same trial in format v1: every call carries its seat's system prompt."""
    events = []
    for e in t.events:
        if isinstance(e, ModelCallEvent):
            call = e.call.model_copy(update={"messages": t.full_messages(e)})
            e = e.model_copy(update={"call": call})
        events.append(e)
    seats = [s.model_copy(update={"system": None}) for s in t.header.seats]
    header = t.header.model_copy(update={"version": 1, "seats": seats})
    return Transcript(header=header, events=events, end=t.end)


def serialise(ts: list[Transcript], repeat: int = 5) -> float:
    """Best-of-``repeat`` CPU seconds to serialise every transcript once."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        for t in ts:
            t.to_jsonl()
        best = min(best, time.process_time() - t0)
    return best


def main() -> None:
    spec = parse_spec(DESIGN)
    trials = spec.trials()
    tmp = Path(tempfile.mkdtemp(prefix="stagbench-bench-"))
    try:
        store = RunStore(tmp)
        store.open(spec, DESIGN, trials)
        pool = ModelPool(spec.model_settings, cache_dir=None)
        asyncio.run(run_trials(spec, trials, store, pool=pool, concurrency=64))
        v2 = [read_transcript(p) for p in store.transcript_paths()]
    finally:
        shutil.rmtree(tmp)
    v1 = [as_v1(t) for t in v2]
    calls = sum(isinstance(e, ModelCallEvent) for t in v2 for e in t.events)
    print(f"{len(v2)} trials, {calls} model calls ({calls / len(v2):.1f} per trial)")
    print("format  bytes/trial  serialise CPU/call")
    figures = {}
    for name, ts in (("v1", v1), ("v2", v2)):
        size = sum(len(t.to_jsonl().encode()) for t in ts) / len(ts)
        cpu = serialise(ts) / calls
        figures[name] = (size, cpu)
        print(f"{name:6s}  {size:11,.0f}  {1e6 * cpu:14.1f} us")
    (b1, c1), (b2, c2) = figures["v1"], figures["v2"]
    print(f"v2/v1: bytes {b2 / b1:.2f}, serialisation CPU {c2 / c1:.2f}")


if __name__ == "__main__":
    main()
