"""Tidy tables from stored transcripts: one row per agent-round, plus trial and agent summaries.

The reader is a fast JSON path with structural checks (header first, a trial_end last,
the round count agreeing); a file that fails them is reported and left out, never
silently analysed. ``strict=True`` validates every event with the pydantic models instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from adversaries.wrappers import player_label
from stagbench import TRANSCRIPT_FORMAT, TRANSCRIPT_VERSION
from stagbench.errors import TranscriptError

_STAG = re.compile(r"\bstag\b", re.I)
_HARE = re.compile(r"\bhare\b", re.I)
_STAG_INTENT = re.compile(
    r"\b(?:i(?:'ll| will| am going to|'m going to| plan to)|let'?s|we should|going)\b"
    r"[^.!?]{0,30}\bstag\b",
    re.I,
)


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
    text = path.read_text(encoding="utf-8")
    if strict:
        from runs.transcript import parse_transcript

        t = parse_transcript(text, str(path))
        return [json.loads(line) for line in t.lines()]
    try:
        events = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise TranscriptError(f"{path}: not valid JSON lines ({exc.msg})") from exc
    if not events or events[0].get("type") != "header":
        raise TranscriptError(f"{path}: does not start with a header")
    head = events[0]
    if head.get("format") != TRANSCRIPT_FORMAT or head.get("version", 0) > TRANSCRIPT_VERSION:
        raise TranscriptError(f"{path}: unknown format {head.get('format')} v{head.get('version')}")
    end = events[-1]
    if end.get("type") != "trial_end":
        raise TranscriptError(f"{path}: truncated, no trial_end event")
    rounds = sum(1 for e in events if e.get("type") == "round_end")
    if rounds != end.get("rounds_played"):
        raise TranscriptError(
            f"{path}: {rounds} rounds recorded, trial_end says {end.get('rounds_played')}"
        )
    return events


def _rows(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    head = events[0]
    trial = head["trial"]
    game = trial["game"]
    n = game["n_players"]
    adv = trial["adversary"]
    seats = {s["seat"]: s for s in head["seats"]}
    base = {
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
    per: dict[tuple[int, int], dict[str, Any]] = {}

    def row(r: int, s: int) -> dict[str, Any]:
        key = (r, s)
        if key not in per:
            info = seats[s]
            per[key] = {
                **base,
                "round": r,
                "seat": s,
                "player": player_label(s),
                "model": info["model"],
                "role": info["role"],
                "adversary": info.get("adversary"),
                "message": None,
                "signalled_stag": False,
                "received": [],
                "received_from": [],
                "stag_signals_from": [],
                "action": None,
                "reasoning": None,
                "payoff": float("nan"),
                "parse_failures": 0,
                "calls": 0,
                "input_tokens": 0,
                "output_tokens": 0,
                "cost_usd": 0.0,
            }
        return per[key]

    for e in events[1:-1]:
        t = e["type"]
        if t == "message":
            sender = row(e["round"], e["sender"])
            if e["parse_failed"]:
                sender["parse_failures"] += 1
            if e["text"] is None:
                continue
            sender["message"] = (
                e["text"] if sender["message"] is None else f"{sender['message']} / {e['text']}"
            )
            stag = signals_stag(e["text"])
            sender["signalled_stag"] = sender["signalled_stag"] or stag
            for recv in e["receivers"]:
                rr = row(e["round"], recv)
                rr["received"].append(e["text"])
                rr["received_from"].append(e["sender"])
                if stag:
                    rr["stag_signals_from"].append(e["sender"])
        elif t == "model_call":
            r = row(e["round"], e["seat"])
            c = e["call"]
            r["calls"] += 1
            r["input_tokens"] += c["input_tokens"]
            r["output_tokens"] += c["output_tokens"]
            r["cost_usd"] += c["cost_usd"]
        elif t == "action":
            r = row(e["round"], e["seat"])
            r["action"] = e["action"]
            r["reasoning"] = e["reasoning"]
            if e["parse_failed"]:
                r["parse_failures"] += 1
        elif t == "round_end":
            for s, p in enumerate(e["payoffs"]):
                row(e["round"], s)["payoff"] = p
            for s in range(n):
                row(e["round"], s)["hunt_succeeded"] = e["hunt_succeeded"]
    return [per[k] for k in sorted(per)]


CATEGORICAL = [
    "spec", "condition", "population", "topology", "disclosure", "adversary_kind",
    "adversary_placement", "model", "role", "adversary", "player",
]  # fmt: skip


def agent_rounds(
    source: str | Path | Iterable[str | Path], *, strict: bool = False
) -> tuple[pd.DataFrame, LoadReport]:
    """One row per agent-round of every readable transcript, and what could not be read."""
    report = LoadReport()
    rows: list[dict[str, Any]] = []
    for path in transcript_files(source):
        report.files += 1
        try:
            rows.extend(_rows(_read_events(path, strict)))
        except (TranscriptError, KeyError, TypeError, ValueError, OSError) as exc:
            report.corrupt.append((str(path), str(exc)))
    df = pd.DataFrame(rows)
    if df.empty:
        return df, report
    df["stag"] = df["action"].map({"stag": 1.0, "hare": 0.0})  # NaN: no valid action
    df["valid"] = df["action"].notna()
    df["n_received"] = df["received"].map(len)
    for col in CATEGORICAL:
        df[col] = df[col].astype("category")
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
