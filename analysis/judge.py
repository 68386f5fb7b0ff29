"""An optional LLM judge for betrayal detection, and its agreement with the lexical
detector (Cohen's kappa).

Analysis reads records only: the judge is handed an ``Ask`` (a prompt and a JSON schema
in, the reply's JSON object out), which the command line builds on the run's model
registry (``stagbench.runs.compose.json_asker``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pandas as pd
from statsmodels.stats.inter_rater import cohens_kappa

#: a prompt and a JSON schema in; the reply's JSON object out (ValueError if it has none)
Ask = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "detected": {"type": "boolean"},
        "round": {"type": ["integer", "null"]},
    },
    "required": ["detected", "round"],
    "additionalProperties": False,
}

PROMPT = (
    "In a repeated Stag Hunt game, player {betrayer} promised to hunt stag in round {t} and "
    "then hunted hare. Below is everything player {me} wrote in later rounds. Did {me} "
    "recognise the betrayal, that is name {betrayer} as untrustworthy or voice distrust of "
    'them? Answer with JSON: {{"detected": true or false, "round": the first round '
    "where it shows, or null}}.\n\n{lines}"
)


def _writings(df: pd.DataFrame, trial_id: str, seat: int, after: int) -> list[tuple[int, str]]:
    rows = df[(df["trial_id"] == trial_id) & (df["seat"] == seat) & (df["round"] > after)]
    out = []
    ordered = rows.sort_values("round")
    for rnd, message, reasoning in zip(
        ordered["round"].tolist(),
        ordered["message"].tolist(),
        ordered["reasoning"].tolist(),
        strict=True,
    ):
        for text in (message, reasoning):
            if isinstance(text, str) and text:
                out.append((int(rnd), text))
    return out


async def judge_detection(
    df: pd.DataFrame, agent_trials: pd.DataFrame, ask: Ask, player_name: str = "P{n}"
) -> pd.DataFrame:
    """Judge every agent-trial with an observed betrayal; returns judge columns per row.
    ``player_name`` is how the transcripts name a player (``{n}`` = seat + 1)."""
    todo = agent_trials[agent_trials["betrayal_round"].notna()]

    async def one(row: pd.Series) -> dict[str, object]:
        t = int(row["betrayal_round"])
        writings = _writings(df, row["trial_id"], int(row["seat"]), t)
        if not writings:
            return {"judge_detected": False, "judge_latency": np.nan, "judge_error": None}
        lines = "\n".join(f"round {r}: {json.dumps(text)}" for r, text in writings)
        me = player_name.format(n=int(row["seat"]) + 1)
        prompt = PROMPT.format(
            betrayer=player_name.format(n=int(row["betrayer"]) + 1), me=me, t=t, lines=lines
        )
        try:
            data = await ask(prompt, SCHEMA)
            detected = bool(data["detected"])
            r = data.get("round")
            latency = (int(r) - t) if detected and isinstance(r, int) and r > t else np.nan
            return {"judge_detected": detected, "judge_latency": latency, "judge_error": None}
        except (ValueError, KeyError, TypeError) as exc:
            return {"judge_detected": np.nan, "judge_latency": np.nan, "judge_error": str(exc)}

    results = await asyncio.gather(*(one(r) for _, r in todo.iterrows()))
    return todo.assign(**pd.DataFrame(results, index=todo.index))


def agreement(judged: pd.DataFrame) -> dict[str, float]:
    """Agreement of the lexical detector and the judge on 'detected'."""
    ok = judged.dropna(subset=["judge_detected"])
    lex = ok["detected"].astype(bool).to_numpy()
    jud = ok["judge_detected"].astype(bool).to_numpy()
    table = np.array(
        [[np.sum(lex & jud), np.sum(lex & ~jud)], [np.sum(~lex & jud), np.sum(~lex & ~jud)]]
    )
    n = int(table.sum())
    agree = float(np.trace(table) / n) if n else float("nan")
    kappa = float(cohens_kappa(table).kappa) if n and agree < 1 else (1.0 if n else float("nan"))
    return {"n": n, "agreement": agree, "kappa": kappa}
