"""The process-level settings a long, call-heavy run wants: an event loop and a GC policy.

- ``run_async`` runs a coroutine on uvloop where it is installed (a core dependency on
  Linux and macOS), else on asyncio's own loop. ``STAGBENCH_EVENT_LOOP=asyncio`` forces
  the standard loop (for debugging, or a platform where uvloop misbehaves).
- ``run_gc_policy`` is held for the span of a batch: the objects that exist before the
  batch (modules, the spec, the trial list) are frozen out of collection, and the young
  generation is collected every 1,000,000 allocations instead of every 700. A run makes
  millions of short-lived records; with CPython's default thresholds the collector alone
  took a third of the orchestrator's CPU (``benchmarks/bench_llm.py`` measures it). A
  young collection walks the records of every trial in flight, so its cost is set by how
  often it runs: at 200,000 it still took 3 µs a model call, at 1,000,000 under 1 µs.
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from stagbench.errors import StagbenchError

T = TypeVar("T")

#: young-generation threshold while a batch runs (CPython's default is 700)
GC_GEN0 = 1_000_000
LOOP_ENV = "STAGBENCH_EVENT_LOOP"


def event_loop_name() -> str:
    """``uvloop`` or ``asyncio``: the loop ``run_async`` will use."""
    choice = os.environ.get(LOOP_ENV, "auto").strip().lower()
    if choice not in ("auto", "uvloop", "asyncio"):
        raise StagbenchError(f"{LOOP_ENV} must be auto, uvloop or asyncio, not {choice!r}")
    if choice == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if choice == "uvloop":
            raise StagbenchError(
                f"{LOOP_ENV}=uvloop but uvloop is not installed (pip install uvloop)"
            ) from None
        return "asyncio"
    return "uvloop"


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on the fastest available loop."""
    try:
        name = event_loop_name()
    except StagbenchError:
        coro.close()  # never started: no "was never awaited" warning
        raise
    if name == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)
    return asyncio.run(coro)


@contextmanager
def run_gc_policy() -> Iterator[None]:
    """Fewer, cheaper garbage collections for the span of a batch; restored afterwards."""
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(max(GC_GEN0, before[0]), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
