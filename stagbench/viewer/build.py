"""Transcripts into the viewer's pages: one JSON document per trial, embedded in its page."""

from __future__ import annotations

import html
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from stagbench.errors import StagbenchError, TranscriptError
from stagbench.games import player_label
from stagbench.games.audit import audit_events
from stagbench.records import (
    ActionEvent,
    MessageEvent,
    ModelCallEvent,
    RoundEndEvent,
    Transcript,
    parse_transcript,
    read_manifest,
)

ASSETS = ("viewer.js", "viewer.css")
#: the factors a trial is filtered by in the index, in the order shown
FACTORS = (
    "condition", "population", "topology", "disclosure", "adversary", "prompt_variant",
    "defence", "payload", "repetition",
)  # fmt: skip


def _arm(t: Transcript) -> str:
    """The adversary arm's label, without the payload when a payloads factor set it (the
    payload is a factor of its own)."""
    trial = t.header.trial
    adv, payload = trial.adversary, trial.payload
    if payload is None:
        return adv.label
    params = {k: v for k, v in adv.params.items() if v != payload.text}
    return adv.model_copy(update={"params": params}).label


def _factors(t: Transcript) -> dict[str, Any]:
    trial = t.header.trial
    return {
        "condition": trial.condition,
        "population": trial.population,
        "topology": trial.topology,
        "disclosure": trial.disclosure.value,
        "adversary": _arm(t),
        "prompt_variant": trial.agents.prompt_variant,
        "defence": trial.agents.defence,
        "payload": trial.payload.name if trial.payload else "",
        "repetition": trial.repetition,
    }


def trial_data(t: Transcript, problems: list[str] | None = None) -> dict[str, Any]:
    """Everything a trial page shows, as plain JSON: seats, graph, and per round the
    messages, actions, payoffs and model calls (each call's whole prompt, rebuilt with
    ``Transcript.full_messages``, and its raw reply)."""
    head = t.header
    game = head.trial.game
    rounds: dict[int, dict[str, Any]] = {
        r: {"round": r, "messages": [], "actions": [None] * game.n_players,
            "reasoning": [None] * game.n_players, "failed": [False] * game.n_players,
            "errors": [None] * game.n_players, "payoffs": None, "stag_count": None,
            "success": None, "calls": []}
        for r in range(1, t.end.rounds_played + 1)
    }  # fmt: skip
    for e in t.events:
        slot = rounds.get(e.round)
        if slot is None:
            continue
        if isinstance(e, MessageEvent):
            slot["messages"].append(
                {"phase": e.phase, "sender": e.sender, "receivers": list(e.receivers),
                 "text": e.text, "parse_failed": e.parse_failed, "error": e.error}
            )  # fmt: skip
        elif isinstance(e, ActionEvent):
            slot["actions"][e.seat] = e.action
            slot["reasoning"][e.seat] = e.reasoning
            slot["failed"][e.seat] = e.parse_failed
            slot["errors"][e.seat] = e.error
        elif isinstance(e, RoundEndEvent):
            slot["payoffs"] = list(e.payoffs)
            slot["stag_count"] = e.stag_count
            slot["success"] = e.hunt_succeeded
        elif isinstance(e, ModelCallEvent):
            c = e.call
            slot["calls"].append(
                {"seat": e.seat, "phase": e.phase, "purpose": c.purpose, "attempt": c.attempt,
                 "model": c.model,
                 "prompt": [{"role": m.role, "content": m.content}
                            for m in t.full_messages(e)],
                 "raw": c.raw, "parsed": c.parsed, "parse_ok": c.parse_ok, "error": c.error,
                 "finish_reason": c.finish_reason, "truncated": c.truncated,
                 "input_tokens": c.input_tokens, "output_tokens": c.output_tokens,
                 "latency_s": c.latency_s, "cost_usd": c.cost_usd, "cached": c.cached,
                 "temperature": c.temperature, "max_tokens": c.max_tokens,
                 "response_model": c.response_model}
            )  # fmt: skip
    payload = head.trial.payload
    return {
        "trial_id": t.trial_id,
        "spec": head.spec_name,
        "version": head.stagbench_version,
        "factors": _factors(t),
        "seed": head.trial.seed,
        "match": head.trial.match,
        "payload_text": payload.text if payload else None,
        "game": game.model_dump(mode="json"),
        "agents": head.trial.agents.model_dump(mode="json"),
        "n": game.n_players,
        "directed": head.directed,
        "edges": [list(e) for e in head.edges],
        "seats": [
            {
                "seat": s.seat,
                "label": player_label(s.seat),
                "model": s.model,
                "role": s.role,
                "adversary": s.adversary,
            }
            for s in head.seats
        ],  # fmt: skip
        "rounds": [rounds[r] for r in sorted(rounds)],
        "totals": list(t.end.totals),
        "parse_failures": t.end.parse_failures,
        "tokens": [t.end.input_tokens, t.end.output_tokens],
        "cost_usd": t.end.cost_usd,
        "problems": problems or [],
    }


def _summary(data: dict[str, Any]) -> dict[str, Any]:
    """One row of the index."""
    honest = {s["seat"] for s in data["seats"] if s["role"] == "honest"}
    acts = [a for r in data["rounds"] for s, a in enumerate(r["actions"]) if s in honest]
    valid = [a for a in acts if a is not None]
    calls = [c for r in data["rounds"] for c in r["calls"]]
    return {
        "trial_id": data["trial_id"],
        **data["factors"],
        "rounds": len(data["rounds"]),
        "honest_stag": sum(a == "stag" for a in valid) / len(valid) if valid else None,
        "coordination": (
            sum(bool(r["success"]) for r in data["rounds"]) / len(data["rounds"])
            if data["rounds"]
            else None
        ),  # fmt: skip
        "parse_failures": data["parse_failures"],
        "truncated": sum(bool(c["truncated"]) for c in calls),
        "calls": len(calls),
        "problems": len(data["problems"]),
    }


def _embed(obj: Any) -> str:
    """JSON safe inside a <script> element: no "<" left to close it."""
    text = orjson.dumps(obj).decode()
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _page(title: str, kind: str, data: Any, prefix: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        f'<link rel="stylesheet" href="{prefix}assets/viewer.css"></head>'
        f'<body data-page="{kind}"><div id="app"><noscript>This viewer needs JavaScript.'
        "</noscript></div>"
        f'<script type="application/json" id="data">{_embed(data)}</script>'
        f'<script src="{prefix}assets/viewer.js"></script></body></html>'
    )


def _files(run: Path) -> list[Path]:
    folder = run / "transcripts" if (run / "transcripts").is_dir() else run
    if not folder.is_dir():
        raise TranscriptError(f"no results folder at {run}")
    return sorted(folder.glob("*.jsonl"))


def build_view(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write the viewer's pages for a results folder; returns the index page."""
    run = Path(run_dir)
    files = _files(run)
    if not files:
        raise TranscriptError(f"no transcripts under {run}")
    out = Path(out_dir) if out_dir else run / "view"
    (out / "trials").mkdir(parents=True, exist_ok=True)
    (out / "assets").mkdir(exist_ok=True)
    source = resources.files("stagbench.viewer") / "assets"
    for name in ASSETS:
        (out / "assets" / name).write_bytes((source / name).read_bytes())
    rows: list[dict[str, Any]] = []
    unreadable: list[dict[str, str]] = []
    spec_names: set[str] = set()
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
            transcript = parse_transcript(text, str(path))
            problems = audit_events([orjson.loads(line) for line in transcript.lines()])
        except (StagbenchError, OSError, UnicodeDecodeError, ValueError) as exc:
            unreadable.append({"file": path.name, "problem": str(exc)})
            continue
        data = trial_data(transcript, problems)
        spec_names.add(data["spec"])
        title = f"{transcript.trial_id} · {data['spec']}"
        (out / "trials" / f"{transcript.trial_id}.html").write_text(
            _page(title, "trial", data, "../"), encoding="utf-8"
        )
        rows.append(_summary(data))
    manifest: dict[str, Any] = {}
    try:
        found = read_manifest(run / "manifest.json")
        manifest = found.model_dump(mode="json") if found else {}
    except (StagbenchError, ValueError) as exc:
        manifest = {"problem": str(exc)}
    spec = manifest.get("spec_name") or ", ".join(sorted(spec_names)) or run.name
    index = {"run": str(run.resolve()), "spec": spec, "factors": list(FACTORS),
             "trials": rows, "unreadable": unreadable, "manifest": manifest}  # fmt: skip
    page = out / "index.html"
    page.write_text(_page(f"stagbench: {spec}", "index", index, ""), encoding="utf-8")
    return page
