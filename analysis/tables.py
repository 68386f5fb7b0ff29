"""Tidy tables from stored transcripts: one row per agent-round, plus trial and agent summaries.

Transcripts are read with ``stagbench.records``' one reader: its fast path (structural
checks: header first, a trial_end last, the round count agreeing; older versions migrated)
by default, its strict path (every event validated) with ``strict=True``. A file that
fails is reported and left out, never silently analysed.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from stagbench.errors import TranscriptError
from stagbench.games import player_label
from stagbench.games.audit import audit_events
from stagbench.records import read_events, read_transcript

_STAG = re.compile(r"\bstag\b", re.I)
_HARE = re.compile(r"\bhare\b", re.I)
_STAG_INTENT = re.compile(
    r"\b(?:i(?:'ll| will| am going to|'m going to| plan to)|let'?s|we should|going)\b"
    r"[^.!?]{0,30}\bstag\b",
    re.I,
)


@functools.lru_cache(maxsize=1 << 16)
def signals_stag(text: str | None) -> bool:
    """Lexical stag signal: the message mentions stag and not hare, or states a stag intent."""
    if not text:
        return False
    if _STAG_INTENT.search(text):
        return True
    return bool(_STAG.search(text)) and not _HARE.search(text)


@dataclass
class LoadReport:
    files: int = 0
    corrupt: list[tuple[str, str]] = field(default_factory=list)


def transcript_files(source: str | Path | Iterable[str | Path]) -> list[Path]:
    """A run folder, a transcripts folder, one file, or a list of these."""
    if isinstance(source, str | Path):
        p = Path(source)
        if p.is_file():
            return [p]
        if (p / "transcripts").is_dir():
            p = p / "transcripts"
        if not p.is_dir():
            raise TranscriptError(f"no transcripts at {p}")
        return sorted(p.glob("*.jsonl"))
    return [f for s in source for f in transcript_files(s)]


def _read_events(path: Path, strict: bool) -> list[dict[str, Any]]:
    """The one reader of ``stagbench.records``: its fast path, or its strict one (every
    event validated) re-dumped into the same dicts. Either way the outcome is re-derived
    from the actions with the engine: a file that disagrees is not analysed."""
    if strict:
        events = [orjson.loads(line) for line in read_transcript(path).lines()]
    else:
        events = read_events(path)
    problems = audit_events(events)
    if problems:
        raise TranscriptError(f"{path} is inconsistent: {'; '.join(problems[:3])}")
    return events


# Columns that are the same for every row of a trial.
TRIAL_COLUMNS = (
    "trial_id", "spec", "condition", "population", "topology", "disclosure", "adversary_kind",
    "adversary_count", "adversary_placement", "repetition", "n_players", "rounds_total",
    "hare_payoff", "stag_needed",
)  # fmt: skip
# Columns that vary by agent-round.
ROW_COLUMNS = (
    "round", "seat", "player", "model", "role", "adversary", "message", "signalled_stag",
    "received", "received_from", "stag_signals_from", "action", "reasoning", "payoff",
    "hunt_succeeded", "parse_failures", "calls", "input_tokens", "output_tokens", "cost_usd",
)  # fmt: skip


def _append_trial(events: list[dict[str, Any]], cols: dict[str, list[Any]]) -> None:
    """Append one trial's agent-rounds to column lists (rows ordered by round, seat)."""
    head = events[0]
    trial = head["trial"]
    game = trial["game"]
    n = game["n_players"]
    rounds = events[-1]["rounds_played"]
    adv = trial["adversary"]
    size = rounds * n
    const = {
        "trial_id": trial["trial_id"],
        "spec": head["spec_name"],
        "condition": trial["condition"],
        "population": "+".join(trial["models"]),
        "topology": trial["topology"],
        "disclosure": trial["disclosure"],
        "adversary_kind": adv["kind"],
        "adversary_count": adv["count"] if adv["kind"] != "none" else 0,
        "adversary_placement": str(adv["placement"]),
        "repetition": trial["repetition"],
        "n_players": n,
        "rounds_total": game["rounds"],
        "hare_payoff": game["hare_payoff"],
        "stag_needed": game["threshold"] or n,
    }
    seats = sorted(head["seats"], key=lambda x: x["seat"])
    message: list[str | None] = [None] * size
    signalled = [False] * size
    received: list[list[str]] = [[] for _ in range(size)]
    received_from: list[list[int]] = [[] for _ in range(size)]
    stag_from: list[list[int]] = [[] for _ in range(size)]
    action: list[str | None] = [None] * size
    reasoning: list[str | None] = [None] * size
    payoff = [float("nan")] * size
    success = [False] * size
    failures = [0] * size
    calls = [0] * size
    tok_in = [0] * size
    tok_out = [0] * size
    cost = [0.0] * size
    for e in events[1:-1]:
        t = e["type"]
        if t == "message":
            i = (e["round"] - 1) * n + e["sender"]
            if e["parse_failed"]:
                failures[i] += 1
            text = e["text"]
            if text is None:
                continue
            message[i] = text if message[i] is None else f"{message[i]} / {text}"
            stag = signals_stag(text)
            signalled[i] = signalled[i] or stag
            base = (e["round"] - 1) * n
            for recv in e["receivers"]:
                received[base + recv].append(text)
                received_from[base + recv].append(e["sender"])
                if stag:
                    stag_from[base + recv].append(e["sender"])
        elif t == "model_call":
            i = (e["round"] - 1) * n + e["seat"]
            c = e["call"]
            calls[i] += 1
            tok_in[i] += c["input_tokens"]
            tok_out[i] += c["output_tokens"]
            cost[i] += c["cost_usd"]
        elif t == "action":
            i = (e["round"] - 1) * n + e["seat"]
            action[i] = e["action"]
            reasoning[i] = e["reasoning"]
            if e["parse_failed"]:
                failures[i] += 1
        elif t == "round_end":
            base = (e["round"] - 1) * n
            for s_, p in enumerate(e["payoffs"]):
                payoff[base + s_] = p
                success[base + s_] = e["hunt_succeeded"]
    for key, value in const.items():
        cols[key].extend([value] * size)
    cols["round"].extend(r for r in range(1, rounds + 1) for _ in range(n))
    cols["seat"].extend(list(range(n)) * rounds)
    for key, field_name in (("player", None), ("model", "model"), ("role", "role"),
                            ("adversary", "adversary")):  # fmt: skip
        per_seat = [
            player_label(x["seat"]) if field_name is None else x.get(field_name) for x in seats
        ]
        cols[key].extend(per_seat * rounds)
    for key, values in (
        ("message", message), ("signalled_stag", signalled), ("received", received),
        ("received_from", received_from), ("stag_signals_from", stag_from), ("action", action),
        ("reasoning", reasoning), ("payoff", payoff), ("hunt_succeeded", success),
        ("parse_failures", failures), ("calls", calls), ("input_tokens", tok_in),
        ("output_tokens", tok_out), ("cost_usd", cost),
    ):  # fmt: skip
        cols[key].extend(values)


CATEGORICAL = [
    "spec", "condition", "population", "topology", "disclosure", "adversary_kind",
    "adversary_placement", "model", "role", "adversary", "player", "trial_id",
]  # fmt: skip


def _load_chunk(
    paths: list[Path], strict: bool
) -> tuple[pd.DataFrame | None, int, list[tuple[str, str]]]:
    cols: dict[str, list[Any]] = {k: [] for k in (*TRIAL_COLUMNS, *ROW_COLUMNS)}
    corrupt: list[tuple[str, str]] = []
    for path in paths:
        try:
            events = _read_events(path, strict)
            scratch: dict[str, list[Any]] = {k: [] for k in cols}
            _append_trial(events, scratch)  # a broken file adds nothing
        except (TranscriptError, KeyError, TypeError, ValueError, IndexError, OSError) as exc:
            corrupt.append((str(path), str(exc)))
            continue
        for k, v in scratch.items():
            cols[k].extend(v)
    if not cols["trial_id"]:
        return None, len(paths), corrupt
    df = pd.DataFrame({k: (pd.Categorical(v) if k in CATEGORICAL else v) for k, v in cols.items()})
    return df, len(paths), corrupt


CHUNK = 2000


def agent_rounds(
    source: str | Path | Iterable[str | Path], *, strict: bool = False, workers: int | None = None
) -> tuple[pd.DataFrame, LoadReport]:
    """One row per agent-round of every readable transcript, and what could not be read.

    Large runs are read in chunks by ``workers`` processes (default: one per core).
    """
    report = LoadReport()
    files = transcript_files(source)
    chunks = [files[i : i + CHUNK] for i in range(0, len(files), CHUNK)]
    workers = min(workers or os.cpu_count() or 1, len(chunks))
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(_load_chunk, chunks, [strict] * len(chunks)))
    else:
        results = [_load_chunk(c, strict) for c in chunks]
    frames = []
    for df_part, n, corrupt in results:
        report.files += n
        report.corrupt += corrupt
        if df_part is not None:
            frames.append(df_part)
    if not frames:
        return pd.DataFrame(), report
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    for col in CATEGORICAL:  # concat of differing categories falls back to object
        if not isinstance(df[col].dtype, pd.CategoricalDtype):
            df[col] = df[col].astype("category")
    df["stag"] = df["action"].map({"stag": 1.0, "hare": 0.0}).astype(float)  # NaN: no action
    df["valid"] = df["action"].notna()
    df["n_received"] = df["received"].map(len)
    return df, report


def save_parquet(df: pd.DataFrame, path: str | Path) -> Path:
    """Parquet needs flat columns: lists of received messages are stored as JSON text."""
    out = df.copy()
    for col in ("received", "received_from", "stag_signals_from"):
        out[col] = out[col].map(json.dumps)
    p = Path(path)
    out.to_parquet(p, index=False)
    return p


def load_parquet(path: str | Path) -> pd.DataFrame:
    df = pd.read_parquet(path)
    for col in ("received", "received_from", "stag_signals_from"):
        df[col] = df[col].map(json.loads)
    return df
