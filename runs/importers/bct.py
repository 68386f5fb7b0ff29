"""``stagbench import bct SRC... --out DIR``: the per-trial logs of the Byzantine Cheap Talk
study (``results/<experiment>/[<condition>/]trial_NN/results.json``) as a results folder.

What becomes what:

- each ``results.json`` is one trial; the folder path from the source root to the trial
  folder (``topology_v1/star``, ``byzantine_soft_v1``) is its condition, so conditions of
  different sources and sub-folders are never pooled;
- ``Agent_k`` sits in seat k - 1 (the order of ``metadata.agents``); each agent's
  ``model_family`` is its model, and the families are the trial's population (a
  Byzantine seat keeps its place in the population, as a stagbench adversary does);
- the Byzantine agents (``metadata.adversary_agents``) are adversaries: ``soft(p=...)``
  when the run names a ``defect_prob``, else ``byzantine``, around a scripted always-stag
  inner agent (the study's Byzantine decisions were scripted); their placement is ``hub``
  or ``leaf`` when every trial of the condition is a star with them at (or off) the hub,
  their seats when those are the same in every trial, else ``random``;
- the visibility map is the graph: viewer v seeing sender s is an edge s -> v. Its name
  is the registered topology it equals (``complete``, ``ring``, ``star(hub=2)``...); a
  condition whose trials differ (a hub drawn per trial) is named by its family
  (``star(hub=varied)``); each transcript keeps its own exact edges. Without a map the
  graph is complete;
- disclosure is ``silent`` when the experiment or its folder says so, else ``explicit``;
- payoffs are read from the rounds (stag success, failed stag, hare, and what a failed
  reply earned), checked to be one table per source, and every round re-derived with the
  engine; the horizon was not told to the agents;
- a failed action reply (``action: None``, ``action_parsing_failed``) is an action of
  None with ``parse_failed``; a talk reply the harness replaced by its fallback word
  ("Error occurred...") is a message with ``parse_failed`` and the word that was sent;
- each honest decision is a model call whose prompt, raw reply and token counts were not
  kept by the study: ``messages`` is empty, tokens are 0, and spec.toml says so.

The top-level ``cooperation_rate`` of each file is ignored (the README of the sample says
it is wrong); everything is computed from the rounds.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import stagbench
from stagbench.errors import StagbenchError
from stagbench.games import Action, payoffs
from stagbench.records import (
    ActionEvent,
    AdversarySpec,
    AgentSettings,
    BodyEvent,
    Disclosure,
    GameConfig,
    Header,
    MessageEvent,
    ModelCallEvent,
    ModelCallRecord,
    RoundEndEvent,
    SeatInfo,
    Transcript,
    TrialEndEvent,
    TrialSpec,
)
from stagbench.runs.importers import Imported, ImporterError, importer
from stagbench.topologies import build_topology

HARNESS = "bct"
#: the scripted behaviour inside the study's Byzantine seats
BYZANTINE_INNER = "scripted/always-stag"
NOT_KEPT = (
    "The Byzantine Cheap Talk logs keep each decision's reasoning and parsed reply but no "
    "prompts, raw replies or token counts: model calls are recorded with empty messages, "
    "no raw reply and 0 tokens, and cost and token figures are not available."
)
_FALLBACK = re.compile(r"^\s*error occurred", re.I)
_LETTERS = re.compile(r"[a-zA-Z]+")


def _heuristic(why: object, word: object = None) -> bool:
    """A reply the harness could not load as JSON and read by its heuristic instead: the
    reasoning it kept is the raw reply cut at 200 characters (JSON, or a code fence, that
    did not load), and for talk (``word``) the word it sent is the reply's first run of
    letters (``"reasoning"`` out of ``{"reasoning": ...``)."""
    if not isinstance(why, str) or not why.lstrip().startswith(("{", "`")):
        return False
    if word is None:
        return True
    first = _LETTERS.search(why)
    return first is not None and first.group(0) == word


_NUMBER = re.compile(r"(\d+)")


class BctError(ImporterError):
    """A results.json that cannot be converted; the message names the file and field."""


# -- reading one file ------------------------------------------------------------------
@dataclass
class Parsed:
    """One results.json, checked and in seat order."""

    source: Path
    condition: str
    names: list[str]
    families: list[str]
    adversaries: list[int]
    soft_p: float | None
    experiment: str
    trial_no: int | None
    rounds_declared: int
    rounds: list[dict[str, Any]]  # per round: talk entry (or None) and action entry
    receivers: dict[int, list[int]]  # sender -> seats that see its word
    edges: list[tuple[int, int]]
    directed: bool
    hint: str | None
    hub: int | None
    # (category, payoff) observations for the payoff table
    observed: list[tuple[str, float]] = field(default_factory=list)


def _need(d: Any, key: str, where: str) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise BctError(f"{where}: missing field {key!r}")
    return d[key]


def _natural(name: str) -> tuple[int, str]:
    m = _NUMBER.search(name)
    return (int(m.group(1)) if m else 1 << 30, name)


def _choice(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BctError(f"{where}: choice {value!r} is not a string")
    low = value.lower()
    if "stag" in low and "hare" not in low:
        return "stag"
    if "hare" in low and "stag" not in low:
        return "hare"
    raise BctError(f"{where}: choice {value!r} is neither 'Hunt Stag' nor 'Hunt Hare'")


def _parse(path: Path, condition: str) -> Parsed:
    where = str(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise BctError(f"{where}: cannot read: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise BctError(f"{where}: not JSON: {exc}") from exc
    meta = _need(data, "metadata", where)
    rounds_data = _need(data, "rounds_data", where)
    if not isinstance(rounds_data, list) or not rounds_data:
        raise BctError(f"{where}: rounds_data is empty")
    talk: dict[int, dict[str, Any]] = {}
    acts: dict[int, dict[str, Any]] = {}
    for i, entry in enumerate(rounds_data):
        at = f"{where}: rounds_data[{i}]"
        r = _need(entry, "round", at)
        if not isinstance(r, int) or r < 1:
            raise BctError(f"{at}: round {r!r} is not a positive integer")
        target = talk if entry.get("stage") == "communication" else acts
        if r in target:
            raise BctError(
                f"{at}: a second {'talk' if target is talk else 'action'} entry for round {r}"
            )
        target[r] = entry
    if not acts:
        raise BctError(f"{where}: no action entries (entries without stage) in rounds_data")
    played = sorted(acts)
    if played != list(range(1, len(played) + 1)):
        raise BctError(f"{where}: the action rounds {played} are not 1..{len(played)}")
    # players, in seat order
    agents = meta.get("agents")
    if isinstance(agents, list) and agents:
        names = [str(_need(a, "name", f"{where}: metadata.agents")) for a in agents]
    else:
        names = sorted(_need(acts[1], "choices", f"{where}: round 1"), key=_natural)
    if len(set(names)) != len(names) or len(names) < 2:
        raise BctError(f"{where}: the players {names} are not at least two distinct names")
    seat = {n: i for i, n in enumerate(names)}
    families = []
    for i, n in enumerate(names):
        fam = None
        if isinstance(agents, list) and i < len(agents) and isinstance(agents[i], dict):
            fam = agents[i].get("model_family") or agents[i].get("model")
        if not fam:
            for entry in (*talk.values(), *acts.values()):
                dec = (entry.get("full_decisions") or {}).get(n)
                if isinstance(dec, dict) and dec.get("model_family"):
                    fam = dec["model_family"]
                    break
        if not fam:
            raise BctError(
                f"{where}: player {n} has no model_family (metadata.agents or its decisions)"
            )
        families.append(str(fam))
    # adversaries
    adv_names = meta.get("adversary_agents")
    if adv_names is None and isinstance(meta.get("adversary_detail"), list):
        adv_names = [d.get("agent_id") for d in meta["adversary_detail"]]
    adv_names = list(adv_names or [])
    unknown = [a for a in adv_names if a not in seat]
    if unknown:
        raise BctError(f"{where}: adversary_agents {unknown} are not players {names}")
    adversaries = sorted(seat[a] for a in adv_names)
    n_adv = meta.get("n_adversaries")
    if isinstance(n_adv, int) and n_adv != len(adversaries):
        raise BctError(
            f"{where}: n_adversaries is {n_adv} but adversary_agents lists {len(adversaries)}"
        )
    experiment = str(meta.get("experiment") or "")
    soft_p = meta.get("defect_prob")
    soft = soft_p is not None or "soft" in experiment.lower()
    if adversaries and soft and not isinstance(soft_p, int | float):
        raise BctError(f"{where}: a soft Byzantine run without a numeric metadata.defect_prob")
    for n in names:
        if seat[n] in adversaries:
            continue
        for entry in acts.values():
            dec = (entry.get("full_decisions") or {}).get(n) or {}
            why = dec.get("reasoning") if isinstance(dec, dict) else None
            if isinstance(why, str) and re.match(r"\s*(soft )?byzantine agent", why, re.I):
                raise BctError(
                    f"{where}: {n} reasons as a Byzantine agent but metadata does "
                    "not list it among adversary_agents"
                )
    # the graph
    vis = meta.get("visibility_map")
    sees: dict[int, set[int]] = {}
    if vis is None:
        sees = {v: set(range(len(names))) for v in range(len(names))}
    else:
        if not isinstance(vis, dict):
            raise BctError(f"{where}: metadata.visibility_map is not an object")
        for viewer, senders in vis.items():
            if viewer not in seat or not isinstance(senders, list):
                raise BctError(
                    f"{where}: visibility_map entry {viewer!r} is not a player "
                    "with a list of senders"
                )
            bad = [s for s in senders if s not in seat]
            if bad:
                raise BctError(f"{where}: visibility_map[{viewer}] names unknown players {bad}")
            sees[seat[viewer]] = {seat[s] for s in senders}
        missing = [names[v] for v in range(len(names)) if v not in sees]
        if missing:
            raise BctError(f"{where}: visibility_map has no entry for {missing}")
    receivers = {s: sorted(v for v in sees if s in sees[v] and v != s) for s in range(len(names))}
    edges = sorted((s, v) for s, vs in receivers.items() for v in vs)
    directed = any((v, s) not in set(edges) for s, v in edges)
    hub_meta = meta.get("hub_agent")
    hub_name = hub_meta.get("agent_id") if isinstance(hub_meta, dict) else hub_meta
    hub = seat.get(hub_name) if isinstance(hub_name, str) else None
    declared = meta.get("rounds", len(played))
    if not isinstance(declared, int) or declared < len(played):
        raise BctError(
            f"{where}: metadata.rounds {declared!r} is below the {len(played)} rounds played"
        )
    if declared > len(played):
        raise BctError(
            f"{where}: the trial stopped after {len(played)} of {declared} rounds "
            "(an unfinished trial)"
        )
    trial_no = meta.get("trial")
    per_round = [{"talk": talk.get(r), "act": acts[r]} for r in played]
    p = Parsed(
        source=path,
        condition=condition,
        names=names,
        families=families,
        adversaries=adversaries,
        soft_p=float(soft_p) if soft and adversaries else None,
        experiment=experiment,
        trial_no=trial_no if isinstance(trial_no, int) else None,
        rounds_declared=declared,
        rounds=per_round,
        receivers=receivers,
        edges=edges,
        directed=directed,
        hint=str(meta["topology"]) if meta.get("topology") else None,
        hub=hub,
    )
    _check_rounds(p, sees)
    return p


def _failed(dec: Any, choice: Any) -> bool:
    """A failed action reply: no choice, or the decision says its parse failed."""
    if choice is None:
        return True
    if not isinstance(dec, dict):
        return False
    return bool(dec.get("action_parsing_failed")) or ("action" in dec and dec["action"] is None)


def _check_rounds(p: Parsed, sees: dict[int, set[int]]) -> None:
    """Choices, payoffs and what each player saw, round by round; collects the payoff
    observations the game's table is read from."""
    where = str(p.source)
    for r, pair in enumerate(p.rounds, 1):
        act = pair["act"]
        at = f"{where}: round {r}"
        choices = _need(act, "choices", at)
        pays = _need(act, "payoffs", at)
        if set(choices) != set(p.names) or set(pays) != set(p.names):
            raise BctError(f"{at}: choices and payoffs must name every player {p.names}")
        actions = []
        for n in p.names:
            dec = (act.get("full_decisions") or {}).get(n)
            c = None if _failed(dec, choices[n]) else _choice(choices[n], f"{at}: {n}")
            actions.append(c)
        success = all(a == "stag" for a in actions)
        for n, a in zip(p.names, actions, strict=True):
            value = pays[n]
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise BctError(f"{at}: payoff of {n} is {value!r}, not a number")
            cat = (
                "invalid"
                if a is None
                else ("hare" if a == "hare" else ("stag" if success else "failed"))
            )
            p.observed.append((cat, float(value)))
        for n in p.names:
            dec = (act.get("full_decisions") or {}).get(n)
            seen = dec.get("words_visible") if isinstance(dec, dict) else None
            if seen is None:
                continue
            try:
                senders = {str(s[0]) for s in seen}
            except (TypeError, IndexError, KeyError) as exc:
                raise BctError(
                    f"{at}: words_visible of {n} is not a list of [sender, word]"
                ) from exc
            want = {p.names[s] for s in sees[p.names.index(n)]}
            if senders - want:
                raise BctError(
                    f"{at}: {n} saw words of {sorted(senders - want)}, outside its "
                    f"visibility map {sorted(want)}"
                )


# -- the design of each condition -------------------------------------------------------
_CANDIDATES = (
    "complete",
    "ring",
    "line",
    "empty",
    "directed_complete",
    "directed_ring",
    "directed_line",
)


def graph_name(edges: list[tuple[int, int]], n: int, hint: str | None = None) -> str:
    """The registered topology string whose edges these are, else ``<hint>(custom)``."""
    names = list(_CANDIDATES) + [f"star(hub={h})" for h in range(n)]
    names += [f"directed_star(hub={h},direction={d})" for h in range(n) for d in ("in", "out")]
    for name in names:
        try:
            if build_topology(name, n).edges() == edges:
                return name
        except StagbenchError:
            continue
    return f"{hint or 'graph'}(custom)"


def _design_topology(names: list[str]) -> str:
    if len(set(names)) == 1:
        return names[0]
    families = {n.split("(")[0] for n in names}
    if families == {"star"}:
        return "star(hub=varied)"
    if len(families) == 1:
        return f"{families.pop()}(varied)"
    return "varied"


def _placement(group: list[Parsed], graphs: list[str]) -> str | list[int]:
    stars = all(g.startswith("star(hub=") for g in graphs)
    if stars:
        hubs = [int(g[len("star(hub=") : -1]) for g in graphs]
        if all(set(p.adversaries) == {h} for p, h in zip(group, hubs, strict=True)):
            return "hub"
        if all(h not in p.adversaries for p, h in zip(group, hubs, strict=True)):
            return "leaf"
    seats = {tuple(p.adversaries) for p in group}
    if len(seats) == 1:
        return list(seats.pop())
    return "random"


def _payoff_table(group: list[Parsed]) -> dict[str, float]:
    """The payoff of stag (success), failed stag, hare and a failed reply, as most rounds of
    a source record them (the study's 10 / 0 / 3 / 0 where no round shows one); a trial
    whose rounds disagree fails on its own, naming the round."""
    seen: dict[str, Counter[float]] = defaultdict(Counter)
    for p in group:
        for cat, v in p.observed:
            seen[cat][v] += 1
    table = {"stag": 10.0, "hare": 3.0, "failed": 0.0, "invalid": 0.0}
    for cat, counts in seen.items():
        table[cat] = counts.most_common(1)[0][0]
    return table


# -- building the records ---------------------------------------------------------------
def _ident(text: str) -> tuple[str, int]:
    digest = hashlib.sha256(f"{HARNESS}:{text}".encode()).hexdigest()
    return digest[:16], int(digest[16:32], 16) % (2**63)


def _call(
    model: str, purpose: str, parsed: dict[str, Any], ok: bool, error: str | None
) -> ModelCallRecord:
    return ModelCallRecord(
        model=model,
        purpose=purpose,
        attempt=1,
        messages=[],
        raw=None,
        temperature=None,
        parsed=parsed,
        parse_ok=ok,
        error=error,
    )


def _transcript(p: Parsed, trial: TrialSpec, spec_name: str, adv_label: str) -> Transcript:
    n = len(p.names)
    seats = [
        SeatInfo(
            seat=s,
            model=BYZANTINE_INNER if s in p.adversaries else p.families[s],
            role="adversary" if s in p.adversaries else "honest",
            adversary=adv_label if s in p.adversaries else None,
        )
        for s in range(n)
    ]
    events: list[BodyEvent] = []
    totals = [0.0] * n
    failures = 0
    for r, pair in enumerate(p.rounds, 1):
        talk, act = pair["talk"], pair["act"]
        words = (talk or act).get("communications") or {}
        decisions = (talk or {}).get("full_decisions") or {}
        if talk is not None or words:
            for s, name in enumerate(p.names):
                word = words.get(name)
                dec = decisions.get(name) if isinstance(decisions.get(name), dict) else {}
                why = dec.get("reasoning") if isinstance(dec, dict) else None
                guessed = word not in (None, "") and _heuristic(why, word)
                fell_back = guessed or (isinstance(why, str) and bool(_FALLBACK.match(why)))
                error = None
                if guessed:
                    error = (
                        f"the talk reply was not JSON; the harness sent its first word, {word!r}"
                    )
                elif fell_back:
                    error = "the talk reply failed; the harness sent its fallback word"
                text = str(word) if word not in (None, "") else None
                if s not in p.adversaries and (talk is not None):
                    events.append(
                        ModelCallEvent(
                            round=r,
                            phase=1,
                            seat=s,
                            call=_call(
                                p.families[s],
                                "talk",
                                {"reasoning": why, "word": word},
                                not fell_back and text is not None,
                                error,
                            ),
                        )
                    )
                failures += fell_back
                events.append(
                    MessageEvent(
                        round=r,
                        phase=1,
                        sender=s,
                        receivers=p.receivers[s] if text is not None else [],
                        text=text,
                        parse_failed=fell_back,
                        error=error,
                    )
                )
        actions: list[Action | None] = []
        for s, name in enumerate(p.names):
            dec = (act.get("full_decisions") or {}).get(name)
            dec = dec if isinstance(dec, dict) else {}
            why = dec.get("reasoning")
            raw_choice = act["choices"][name]
            failed = _failed(dec, raw_choice)
            choice = None if failed else _choice(raw_choice, f"{p.source}: round {r}")
            guessed = not failed and _heuristic(why)
            substituted = not failed and isinstance(why, str) and bool(_FALLBACK.match(why))
            error = None
            if failed:
                error = "the action reply could not be parsed (no action)"
            elif guessed:
                error = (
                    f"the action reply was not JSON; the harness read {raw_choice!r} from its text"
                )
            elif substituted:
                error = f"the reply failed; the harness substituted {raw_choice!r}"
            substituted = substituted or guessed
            flagged = failed or substituted
            failures += flagged
            if s not in p.adversaries:
                events.append(
                    ModelCallEvent(
                        round=r,
                        phase=None,
                        seat=s,
                        call=_call(
                            p.families[s],
                            "act",
                            {"reasoning": why, "choice": raw_choice},
                            not flagged,
                            error,
                        ),
                    )
                )
            events.append(
                ActionEvent(
                    round=r,
                    seat=s,
                    action=choice,
                    reasoning=why if isinstance(why, str) else None,
                    parse_failed=flagged,
                    error=error,
                )
            )
            actions.append(None if choice is None else Action(choice))
        want = payoffs(trial.game, actions)
        got = [float(act["payoffs"][name]) for name in p.names]
        if any(abs(g - w) > 1e-9 for g, w in zip(got, want, strict=True)):
            raise BctError(
                f"{p.source}: round {r}: recorded payoffs {got} are not the game's "
                f"{list(want)} for actions {[a and a.value for a in actions]}"
            )
        stags = sum(a is Action.STAG for a in actions)
        events.append(
            RoundEndEvent(
                round=r,
                actions=[a.value if a else None for a in actions],
                payoffs=got,
                stag_count=stags,
                hunt_succeeded=stags >= trial.game.stag_needed,
            )
        )
        totals = [t + g for t, g in zip(totals, got, strict=True)]
    header = Header(
        stagbench_version=stagbench.__version__,
        spec_name=spec_name,
        trial=trial,
        seats=seats,
        edges=p.edges,
        directed=p.directed,
    )
    end = TrialEndEvent(rounds_played=len(p.rounds), totals=totals, parse_failures=failures)
    return Transcript(header=header, events=events, end=end)


def _find(src: Path) -> list[tuple[Path, str]]:
    """Every results.json under ``src`` with its condition (the source's name and the
    folders down to the trial folder; for one file or one trial folder, ``_placed``)."""
    if src.is_file():
        return [(src, _placed(src.parent))]
    files = sorted(src.rglob("results.json"))
    out = []
    for f in files:
        rel = f.parent.relative_to(src)
        if not rel.parts:  # the source is a trial folder
            out.append((f, _placed(src)))
            continue
        parts = [src.resolve().name, *rel.parts[:-1]]
        out.append((f, "/".join(parts)))
    return out


def _placed(trial: Path) -> str:
    """The condition of a trial folder imported on its own: the folders from the study's
    ``results`` folder (the nearest above it) down to it, without it
    (``results/byzantine/adv_2/trial_04``: ``byzantine/adv_2``, as importing
    ``results/byzantine`` names it); with no ``results`` folder above, its folder's name."""
    here = trial.resolve()
    chain: list[str] = []
    for parent in here.parents:
        if parent.name == "results":
            return "/".join(reversed(chain)) or parent.name
        chain.append(parent.name)
    return here.parent.name or here.name


@importer("bct", "Byzantine Cheap Talk study: results/<experiment>/.../trial_NN/results.json")
def convert(sources: list[Path]) -> Imported:
    names = [s.resolve().name for s in sources]
    spec_name = "bct: " + " + ".join(names)
    result = Imported(harness=HARNESS, sources=[s.resolve() for s in sources], spec_name=spec_name)
    found: dict[Path, list[tuple[Path, str]]] = {}
    owner: dict[str, Path] = {}  # each condition's source
    seen: dict[Path, Path] = {}  # each file's source
    for src in sources:
        found[src] = _find(src)
        if not found[src]:
            raise BctError(f"no results.json under {src}")
        for path, condition in found[src]:
            first = seen.setdefault(path.resolve(), src)
            if first != src:
                raise BctError(
                    f"{path} is under two sources ({first} and {src}): each trial would be "
                    "imported twice, as two conditions; give each folder once"
                )
            first = owner.setdefault(condition, src)
            if first != src:
                raise BctError(
                    f"{first} and {src} both hold a condition {condition!r} (folders of the "
                    "same name): their trials would mix; import them into separate folders"
                )
    parsed: dict[str, list[Parsed]] = defaultdict(list)
    by_source: dict[Path, list[Parsed]] = defaultdict(list)
    for src in sources:
        for path, condition in found[src]:
            try:
                p = _parse(path, condition)
            except BctError as exc:
                result.failures.append((_ident(str(path.resolve()))[0], str(path), str(exc)))
                continue
            parsed[condition].append(p)
            by_source[src].append(p)
    tables = {}
    for group in by_source.values():
        table = _payoff_table(group)
        for p in group:
            tables[p.source] = table
    conditions: dict[str, dict[str, Any]] = {}
    for condition, group in sorted(parsed.items()):
        group.sort(key=lambda p: (p.trial_no if p.trial_no is not None else 1 << 30, str(p.source)))
        graphs = [graph_name(p.edges, len(p.names), p.hint) for p in group]
        topology = _design_topology(graphs)
        kinds = {(len(p.adversaries), p.soft_p) for p in group}
        if len(kinds) > 1:
            for p in group:
                result.failures.append(
                    (
                        _ident(str(p.source.resolve()))[0],
                        str(p.source),
                        f"condition {condition} mixes adversary arms {sorted(map(str, kinds))}: "
                        "not one condition",
                    )
                )
            continue
        count, soft_p = kinds.pop()
        if count:
            kind, params = ("soft", {"p": soft_p}) if soft_p is not None else ("byzantine", {})
            adv = AdversarySpec(
                kind=kind,
                params=params,
                count=count,
                placement=_placement(group, graphs),
                model=BYZANTINE_INNER,
            )
            adv_label = f"{kind}(p={soft_p})" if soft_p is not None else kind
        else:
            adv, adv_label = AdversarySpec(kind="none"), "none"
        silent = any("silent" in x.lower() for x in (condition, *(p.experiment for p in group)))
        disclosure = Disclosure.SILENT if silent else Disclosure.EXPLICIT
        conditions[condition] = {
            "trials": len(group),
            "topology": topology,
            "disclosure": disclosure.value,
            "adversary": adv.label,
        }
        for i, p in enumerate(group):
            pay = tables[p.source]
            game = GameConfig(
                n_players=len(p.names),
                rounds=p.rounds_declared,
                stag_payoff=pay["stag"],
                hare_payoff=pay["hare"],
                failed_stag_payoff=pay["failed"],
                invalid_payoff=pay["invalid"],
                threshold=None,
                talk_phases=1 if any(r["talk"] is not None for r in p.rounds) else 0,
                horizon_disclosed=False,
            )
            rel = f"{condition}/{p.source.parent.name}"
            trial_id, seed = _ident(rel)
            trial = TrialSpec(
                trial_id=trial_id,
                seed=seed,
                repetition=(p.trial_no - 1) if p.trial_no is not None else i,
                condition=condition,
                game=game,
                models=tuple(p.families),
                topology=topology,
                disclosure=disclosure,
                adversary=adv,
                agents=AgentSettings(temperature=None, prompt_variant="bct (not kept)"),
            )
            result.trials.append(trial)
            try:
                result.transcripts.append(_transcript(p, trial, spec_name, adv_label))
            except (BctError, StagbenchError, ValueError) as exc:
                result.failures.append((trial_id, str(p.source), str(exc)))
    if not result.trials and result.failures:
        raise BctError(
            f"nothing could be imported: {len(result.failures)} file(s) failed; "
            f"the first: {result.failures[0][2]}"
        )
    result.notes = {
        "prompts_kept": False,
        "raw_replies_kept": False,
        "tokens_kept": False,
        "note": NOT_KEPT,
        "player_name": "Agent_{n}",
        "conditions": {
            c: f"{v['trials']} trials, {v['topology']}, {v['disclosure']}, "
            f"adversary {v['adversary']}"
            for c, v in conditions.items()
        },
    }
    return result
