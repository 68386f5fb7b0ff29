"""Transcripts into the viewer's pages: one JSON document per trial, embedded in its page."""

from __future__ import annotations

import contextlib
import hashlib
import html
import os
import re
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from stagbench.errors import StagbenchError, StoreError, TranscriptError
from stagbench.games import player_label
from stagbench.games.audit import consistent
from stagbench.records import (
    ActionEvent,
    MessageEvent,
    ModelCallEvent,
    RoundEndEvent,
    Transcript,
    read_events,
    read_manifest,
    validate_events,
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
            for s in sorted(head.seats, key=lambda s: s.seat)  # d.seats[k] is seat k
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


#: a trial id that can name its page as it is: a plain token (no dot, no slash)
_PLAIN = re.compile(r"[A-Za-z0-9_-]{1,64}")


def page_name(trial_id: str) -> str:
    """The file name (without ``.html``) of a trial's page: its id when that is a plain
    token, else a hash of it. An id comes from the transcript, which anyone may have
    written (``../../x`` must not name a page outside ``trials/``)."""
    if _PLAIN.fullmatch(trial_id):
        return trial_id
    return "id-" + hashlib.sha256(trial_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def read_shown(path: Path) -> Transcript:
    """A transcript as the analysis and the store read it: the reader (which opens only a
    regular file: a FIFO would block its reader forever), then the engine's audit; a file
    that disagrees with itself is a ``TranscriptError`` naming why."""
    return validate_events(consistent(read_events(path), path), str(path))


def _umask() -> int:
    """The process's umask: from ``/proc`` where there is one (reading it there changes
    nothing), else by setting it and putting it back."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write(path: Path, text: str, mode: int | None = None) -> None:
    """Write one page by replacing it whole: a link already at ``path`` is replaced, never
    written through. The page gets the mode a new file gets (``0o666`` less the umask;
    ``mode``: that, worked out once for a build's pages): ``mkstemp`` makes its file
    ``0o600``, which nobody else on a shared drive, nor a web server, could read."""
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o666 & ~_umask() if mode is None else mode)
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise StoreError(f"cannot write {path}: {exc}") from exc


def _folder(path: Path) -> Path:
    """A folder of the view, made; a link there is refused (pages go where they are seen)."""
    if path.is_symlink():
        raise StoreError(f"{path} is a link; the viewer writes only into a real folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot make {path}: {exc}") from exc
    return path


def build_view(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write the viewer's pages for a results folder; returns the index page. A transcript
    that cannot be read, or that the engine's audit calls inconsistent, is listed in the
    index with why, and the others are shown."""
    run = Path(run_dir)
    files = _files(run)
    if not files:
        raise TranscriptError(f"no transcripts under {run}")
    out = _folder(Path(out_dir) if out_dir else run / "view")
    trials, assets = _folder(out / "trials"), _folder(out / "assets")
    source = resources.files("stagbench.viewer") / "assets"
    mode = 0o666 & ~_umask()  # once: reading it per page was a sixteenth of a build
    for name in ASSETS:
        _write(assets / name, (source / name).read_text(encoding="utf-8"), mode)
    rows: list[dict[str, Any]] = []
    unreadable: list[dict[str, str]] = []
    spec_names: set[str] = set()
    pages: set[str] = set()
    for path in files:
        try:  # the page whole, before anything is written: a file that fails is listed
            transcript = read_shown(path)
            data = trial_data(transcript)
            title = f"{transcript.trial_id} · {data['spec']}"
            text = _page(title, "trial", data, "../")
            row = _summary(data)
        except StagbenchError as exc:
            unreadable.append({"file": path.name, "problem": str(exc)})
            continue
        except Exception as exc:  # one file the checks let through must not sink the rest
            # (e.g. orjson's "Recursion limit reached": a reply parsed 250 levels deep)
            why = f"{type(exc).__name__}: {exc}"
            unreadable.append({"file": path.name, "problem": f"cannot be shown ({why})"})
            continue
        name = page_name(transcript.trial_id)
        if name in pages:  # two files of one trial (a copy): a page each
            name = page_name(f"{transcript.trial_id}\0{path.name}")
        pages.add(name)
        spec_names.add(data["spec"])
        _write(trials / f"{name}.html", text, mode)
        rows.append({**row, "page": name})
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
    _write(page, _page(f"stagbench: {spec}", "index", index, ""), mode)
    return page
