"""Run small specs through the real engine for analysis tests."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agents.models.pool import ModelPool
from runs.orchestrator import run_trials
from runs.spec import parse_spec
from runs.store import RunStore


def run_spec(text: str, out: Path, llm: bool = False) -> Path:
    spec = parse_spec(text)
    trials = spec.trials()
    store = RunStore(out)
    store.open(spec, text, trials)
    pool = ModelPool(spec.model_settings) if llm else None
    summary = asyncio.run(run_trials(spec, trials, store, pool=pool, concurrency=8))
    assert summary.finished, summary.errors
    return out
