"""Run small specs through the real engine for analysis tests."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pandas as pd

from stagbench.agents.models.base import ChatMessage
from stagbench.agents.models.pool import ModelPool
from stagbench.agents.models.providers.mock import register_mock
from stagbench.analysis.tables import agent_rounds
from stagbench.runs.orchestrator import run_trials
from stagbench.runs.spec import parse_spec
from stagbench.runs.store import RunStore


def run_spec(text: str, out: Path, llm: bool = False) -> Path:
    spec = parse_spec(text)
    trials = spec.trials()
    store = RunStore(out)
    store.open(spec, text, trials)
    pool = ModelPool(spec.model_settings) if llm else None
    summary = asyncio.run(run_trials(spec, trials, store, pool=pool, concurrency=8))
    assert summary.finished, summary.errors
    return out


def _accuser(messages: list[ChatMessage], purpose: str | None) -> str:
    """Hunts stag; once a round has been played, accuses P4 (the planted betrayer)."""
    if purpose == "act":
        return json.dumps({"reasoning": "stag is best", "action": "stag"})
    if "Past rounds" in messages[-1].content:
        return json.dumps({"message": "P4 promised stag and lied. I do not trust P4."})
    return json.dumps({"message": "Let's all hunt stag."})


ACCUSED = """
name = "accused"
[game]
rounds = 3
[factors]
models = ["mock/accuser"]
adversaries = ["byzantine(count=1,placement=[3])"]
"""


def accused_run(out: Path) -> pd.DataFrame:
    """Three honest accusers and a Byzantine P4: a betrayal in round 1, named in round 2."""
    register_mock("accuser", _accuser)
    df, _ = agent_rounds(run_spec(ACCUSED, out, llm=True))
    return df


def defence_split_rows() -> pd.DataFrame:
    """The red team's defence design as agent-rounds: 12 undefended trials that hunt hare
    and 12 defended ones that hunt stag, 3 agents x 4 rounds each, every round alike (the
    trials do not vary along round)."""
    return pd.DataFrame(
        [
            {"trial_id": f"{d}{t}", "defence": d, "round": r, "stag": float(d == "delimit")}
            for d in ("none", "delimit")
            for t in range(12)
            for r in range(1, 5)
            for _ in range(3)
        ]
    )
