"""Tidy tables from stored transcripts: one row per agent-round, plus trial and agent summaries.

Transcripts are read with ``stagbench.records``' one reader: its fast path (structural
checks: header first, a trial_end last, the round count agreeing; older versions migrated)
by default, its strict path (every event validated) with ``strict=True``. A file that
fails is reported and left out, never silently analysed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from stagbench.analysis.lexical import DEFAULT, Detector, detector_for
from stagbench.errors import TranscriptError
from stagbench.games import player_label
from stagbench.games.audit import consistent
from stagbench.records import (
    GameConfig,
    Lexicon,
    check_events,
    load_events,
    parse_transcript,
    read_events,
)
from stagbench.records.reader import read_file

#: finish reasons that mean the provider cut the reply at its token limit
TRUNCATED = ("length", "max_tokens")


def signals_stag(text: str | None) -> bool:
    """Lexical stag signal with the default vocabularies (``analysis.lexical``)."""
    return DEFAULT.signals_stag(text)


def trial_digest(trial: dict[str, Any]) -> str:
    """A short hash of a trial record's content (key order does not matter)."""
    return hashlib.blake2b(
        orjson.dumps(trial, option=orjson.OPT_SORT_KEYS), digest_size=8
    ).hexdigest()


@dataclass
class LoadReport:
    """What was read: how many files, which could not be (file, why), and per readable
    file its trial id, spec name and trial digest (for the design check)."""

    files: int = 0
    corrupt: list[tuple[str, str]] = field(default_factory=list)
    read: list[tuple[str, str, str, str]] = field(default_factory=list)


def transcript_files(source: str | Path | Iterable[str | Path]) -> list[Path]:
    """A run folder, a transcripts folder, one file, or a list of these. Every ``*.jsonl``
    of a folder is listed, whatever it is: what cannot be read as a transcript (a folder,
    a dangling link, a link loop, a FIFO, a socket, a device) fails its read
    (``records.read_file``, which never waits on a FIFO) and is listed with why."""
    if isinstance(source, str | Path):
        p = Path(source)
        if p.is_file():
            return [p]
        if (p / "transcripts").is_dir():
            p = p / "transcripts"
        if not p.is_dir():
            raise TranscriptError(f"no transcripts at {p}")
        # iterdir makes each child Path from its name without parsing it again (much
        # faster than p / name); sorted by name (faster than sorting Paths)
        found = [f for f in p.iterdir() if f.name.endswith(".jsonl") and not f.name.startswith(".")]
        return sorted(found, key=lambda f: f.name)
    return [f for s in source for f in transcript_files(s)]


def read_checked(path: Path, strict: bool, data: bytes | None = None) -> list[dict[str, Any]]:
    """The one reader of ``stagbench.records``: its fast path, or its strict one (every
    event validated) re-dumped into the same dicts. Either way the outcome is re-derived
    from the actions with the engine: a file that disagrees is not analysed. ``data``: the
    file's bytes, when already read."""
    if strict:
        raw = read_file(path) if data is None else data
        record = parse_transcript(raw, str(path), strict=True)
        events = [orjson.loads(line) for line in record.lines()]
    else:
        events = read_events(path) if data is None else load_events(data, str(path))
    return consistent(events, path)


def arm_label(adv: dict[str, Any], payload: dict[str, Any] | None = None) -> str:
    """An adversary arm as ``AdversarySpec.label`` writes it (``soft(p=0.5)[1@hub]``),
    from the record's dict; without the text a spec's ``payloads`` factor put in it (the
    payload is a factor of its own)."""
    kind, count = adv.get("kind", "none"), adv.get("count", 0)
    if kind == "none" or not count:
        return "none"
    params = adv.get("params") or {}
    if payload is not None:
        params = {k: v for k, v in params.items() if v != payload.get("text")}
    args = ",".join(f"{k}={v}" for k, v in sorted(params.items()))
    place = adv.get("placement", "random")
    where = place if isinstance(place, str) else "seats" + str(list(place))
    group = ",colluding" if adv.get("colluding") else ""
    return f"{kind}{f'({args})' if args else ''}[{count}@{where}{group}]"


# Columns that are the same for every row of a trial.
TRIAL_COLUMNS = (
    "trial_id", "spec", "condition", "population", "topology", "disclosure", "adversary_kind",
    "adversary_count", "adversary_placement", "adversary_arm", "prompt_variant", "defence",
    "payload", "repetition", "n_players", "rounds_total", "stag_payoff", "hare_payoff",
    "failed_stag_payoff", "invalid_payoff", "stag_needed",
)  # fmt: skip
# Columns that vary by agent-round.
ROW_COLUMNS = (
    "round", "seat", "player", "model", "role", "adversary", "message", "signalled_stag",
    "promised_no_stag", "received", "received_from", "stag_signals_from", "action",
    "reasoning", "payoff", "hunt_succeeded", "parse_failures", "calls", "truncated",
    "input_tokens", "output_tokens", "cost_usd",
)  # fmt: skip


#: agent-round columns that are the same for a seat in every round of a trial
SEAT_COLUMNS = ("player", "model", "role", "adversary")


@dataclass
class TrialRows:
    """One trial's agent-rounds (ordered by round, seat) in three parts: ``const``, the
    ``TRIAL_COLUMNS`` (one value for the trial), ``seats``, the ``SEAT_COLUMNS`` (one value
    per seat), and ``rows``, the other ``ROW_COLUMNS`` (one value per agent-round)."""

    const: dict[str, Any]
    seats: dict[str, list[Any]]
    rows: dict[str, list[Any]]
    rounds: int
    #: the trial's message events, in order (what other views of the trial read of its talk)
    said: list[dict[str, Any]] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.rows["round"])

    def columns(self) -> dict[str, list[Any]]:
        """Every column as a list, one value per agent-round."""
        size, out = self.size, {}
        for k in (*TRIAL_COLUMNS, *ROW_COLUMNS):
            if k in self.const:
                out[k] = [self.const[k]] * size
            elif k in self.seats:
                out[k] = self.seats[k] * self.rounds
            else:
                out[k] = self.rows[k]
        return out


#: the game record's defaults, for a header that leaves a field out
_GAME_DEFAULTS = {name: f.default for name, f in GameConfig.model_fields.items()}


def trial_factors(trial: dict[str, Any]) -> dict[str, Any]:
    """A trial record's design factors as the agent-round table holds them: its condition,
    population, topology, disclosure, adversary arm, wording, defence and payload."""
    agents = trial["agents"]
    return {
        "condition": trial["condition"],
        "population": "+".join(trial["models"]),
        "topology": trial["topology"],
        "disclosure": trial["disclosure"],
        "adversary_arm": arm_label(trial["adversary"], trial.get("payload")),
        "prompt_variant": agents.get("prompt_variant", "default"),
        "defence": agents.get("defence", "none"),
        "payload": (trial.get("payload") or {}).get("name", ""),
    }


def trial_rows(events: list[dict[str, Any]], detector: Detector = DEFAULT) -> TrialRows:
    """One trial's agent-rounds (ordered by round, seat)."""
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
        **trial_factors(trial),
        "adversary_kind": adv["kind"],
        "adversary_count": adv["count"] if adv["kind"] != "none" else 0,
        "adversary_placement": str(adv["placement"]),
        "repetition": trial["repetition"],
        "n_players": n,
        "rounds_total": game["rounds"],
        "stag_payoff": game["stag_payoff"],
        "hare_payoff": game["hare_payoff"],
        # a header may leave out a payoff at its default (the record's own)
        "failed_stag_payoff": game.get("failed_stag_payoff", _GAME_DEFAULTS["failed_stag_payoff"]),
        "invalid_payoff": game.get("invalid_payoff", _GAME_DEFAULTS["invalid_payoff"]),
        "stag_needed": game["threshold"] or n,
    }
    seats = sorted(head["seats"], key=lambda x: x["seat"])
    message: list[str | None] = [None] * size
    signalled = [False] * size
    no_stag = [False] * size
    received: list[list[str]] = [[] for _ in range(size)]
    received_from: list[list[int]] = [[] for _ in range(size)]
    stag_from: list[list[int]] = [[] for _ in range(size)]
    action: list[str | None] = [None] * size
    reasoning: list[str | None] = [None] * size
    payoff = [float("nan")] * size
    success = [False] * size
    failures = [0] * size
    calls = [0] * size
    cut = [0] * size
    tok_in = [0] * size
    tok_out = [0] * size
    cost = [0.0] * size
    said: list[dict[str, Any]] = []
    signals_stag, withdraws = detector.signals_stag, detector.withdraws
    promises_no_stag = detector.promises_no_stag
    for e in events[1:-1]:
        t = e["type"]
        if t == "message":
            said.append(e)
            base = (e["round"] - 1) * n
            sender = e["sender"]
            i = base + sender
            if e["parse_failed"]:
                failures[i] += 1
            text = e["text"]
            if text is None:
                continue
            again = message[i] is not None  # a later phase's word of the round
            message[i] = text if message[i] is None else f"{message[i]} / {text}"
            # The promise in force when the agent acts is its last word on its action in
            # the round: a stag taken back in a later phase ("I will hunt hare") is no
            # promise broken; talk of neither ("Agreed, see you there"), or nothing, leaves
            # it standing.
            stag = signals_stag(text)
            # likewise its last word that promised no stag (an announced hare, a refusal,
            # "I am defecting.") or stag; talk of neither leaves the earlier word standing,
            # and a word that promised no stag takes a stag promise back (rt43 F4: the two
            # columns were both true after "I will hunt stag" / "I am defecting.")
            no = not stag and promises_no_stag(text, True)  # one phase's message
            stands = again and not stag and not no and not withdraws(text)
            if not stands:
                signalled[i] = stag
            if stag or no or not again:
                no_stag[i] = no
            for recv in e["receivers"]:
                j = base + recv
                received[j].append(text)
                received_from[j].append(sender)
                if stands:
                    continue
                if again and sender in stag_from[j]:
                    stag_from[j].remove(sender)
                if stag:
                    stag_from[j].append(sender)
        elif t == "model_call":
            i = (e["round"] - 1) * n + e["seat"]
            c = e["call"]
            calls[i] += 1
            cut[i] += c.get("finish_reason") in TRUNCATED
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
    per_seat = {
        "player": [player_label(x["seat"]) for x in seats],
        "model": [x.get("model") for x in seats],
        "role": [x.get("role") for x in seats],
        "adversary": [x.get("adversary") for x in seats],
    }
    rows = {
        "round": [r for r in range(1, rounds + 1) for _ in range(n)],
        "seat": list(range(n)) * rounds,
        "message": message, "signalled_stag": signalled, "promised_no_stag": no_stag,
        "received": received,
        "received_from": received_from, "stag_signals_from": stag_from, "action": action,
        "reasoning": reasoning, "payoff": payoff, "hunt_succeeded": success,
        "parse_failures": failures, "calls": calls, "truncated": cut, "input_tokens": tok_in,
        "output_tokens": tok_out, "cost_usd": cost,
    }  # fmt: skip
    for k, v in (*per_seat.items(), *rows.items()):  # what a table of them would refuse
        if len(v) * (rounds if k in per_seat else 1) != size:
            raise ValueError(f"{k}: {len(v)} values for {rounds} rounds of {n} players")
    return TrialRows(const, per_seat, rows, rounds, said)


def _append_trial(
    events: list[dict[str, Any]], cols: dict[str, list[Any]], detector: Detector = DEFAULT
) -> None:
    """Append one trial's agent-rounds to column lists (rows ordered by round, seat)."""
    for k, v in trial_rows(events, detector).columns().items():
        cols[k].extend(v)


class RoundsColumns:
    """Many trials' agent-rounds, gathered trial by trial (``add``) into one table
    (``frame``: what ``rounds_frame`` makes of the same rows as column lists). A column
    that is constant in a trial, or for a seat in a trial, is kept once per trial or seat
    and spread over the rows at the end."""

    def __init__(self) -> None:
        self.const: dict[str, list[Any]] = {k: [] for k in TRIAL_COLUMNS}
        self.seats: dict[str, list[Any]] = {k: [] for k in SEAT_COLUMNS}
        self.rows: dict[str, list[Any]] = {k: [] for k in ROW_COLUMNS if k not in SEAT_COLUMNS}
        self.sizes: list[int] = []  # agent-rounds of each trial
        self.shape: list[tuple[int, int]] = []  # (seats, rounds) of each trial

    def add(self, trial: TrialRows) -> None:
        if not trial.size:  # no rows: its values must not become categories
            return
        for k, v in trial.const.items():
            self.const[k].append(v)
        for k, values in trial.seats.items():
            self.seats[k].extend(values)
        for k, values in trial.rows.items():
            self.rows[k].extend(values)
        self.sizes.append(trial.size)
        self.shape.append((len(trial.seats["player"]), trial.rounds))

    def __len__(self) -> int:
        return len(self.rows["round"])

    def frame(self) -> pd.DataFrame:
        """The agent-round table (categories where values repeat)."""
        by_trial = np.repeat(np.arange(len(self.sizes)), self.sizes)
        # row (round, seat) of a trial: its seat's value, the trial's first seat's index
        # plus the row's place in the trial modulo its seats
        shape = np.array(self.shape, dtype=np.int64).reshape(-1, 2)
        seats, sizes = shape[:, 0], np.array(self.sizes, dtype=np.int64)
        first_seat = np.cumsum(seats) - seats
        first_row = np.cumsum(sizes) - sizes
        place = np.arange(int(sizes.sum()), dtype=np.int64) - first_row[by_trial]
        seat_take: np.ndarray[Any, Any] = first_seat[by_trial] + place % seats[by_trial]
        data: dict[str, Any] = {}
        for k in (*TRIAL_COLUMNS, *ROW_COLUMNS):
            if k in self.rows:
                data[k] = _column(k, self.rows[k])
                continue
            if k in self.const:
                values, take = self.const[k], by_trial
            else:
                values, take = self.seats[k], seat_take
            if k in CATEGORICAL:  # the categories of the values, each row its value's code
                cat = pd.Categorical(values)
                data[k] = pd.Categorical.from_codes(cat.codes[take], dtype=cat.dtype)
            else:  # the type the values give, each row its value
                data[k] = pd.Series(values).take(take).reset_index(drop=True)
        return pd.DataFrame(data)


#: agent-round columns of numbers, of bools and of texts (or None): made by ``typed``
NUMERIC = ("round", "seat", "payoff", "parse_failures", "calls", "truncated", "input_tokens",
           "output_tokens", "cost_usd")  # fmt: skip
BOOLS = ("signalled_stag", "promised_no_stag", "hunt_succeeded")
TEXTS = ("message", "reasoning", "action")
_STR = pd.StringDtype(na_value=np.nan)  # the type pandas gives a column of texts and None


def typed(values: list[Any], kind: str) -> Any:
    """``values`` as the column ``pd.DataFrame`` makes of them (type and values), made
    without pandas' slow inference of each value's type where numpy or Arrow make the same
    of what the list holds: ``kind`` "numeric", ints only (int64) or floats only
    (float64); "bool", bools only; "text", texts and None (Arrow's strings). Any other
    list (None only, a bool among ints, NaN among texts, ints and floats mixed, ints too
    large, anything else) is left to pandas."""
    if not values:
        return values
    held = set(map(type, values))
    if kind == "numeric" and (held == {int} or held == {float}):
        array = np.array(values)
        if array.dtype == (np.int64 if held == {int} else np.float64):
            return array
    elif kind == "bool" and held == {bool}:
        return np.array(values, dtype=np.bool_)
    elif kind == "text" and str in held and held <= {str, type(None)}:
        return pd.array(pa.array(values, pa.large_string()), dtype=_STR)
    return values


def _column(name: str, values: list[Any]) -> Any:
    """A row column of ``RoundsColumns``, as ``pd.DataFrame`` makes it of the list (type
    and values): categories, or made by ``typed`` where its kind is known."""
    if name in CATEGORICAL:
        return pd.Categorical(values)
    kind = "numeric" if name in NUMERIC else "bool" if name in BOOLS else "text"
    return typed(values, kind) if kind != "text" or name in TEXTS else values


CATEGORICAL = [
    "spec", "condition", "population", "topology", "disclosure", "adversary_kind",
    "adversary_placement", "adversary_arm", "prompt_variant", "defence", "payload", "model",
    "role", "adversary", "player", "trial_id",
]  # fmt: skip


Chunk = tuple[pd.DataFrame | None, int, list[tuple[str, str]], list[tuple[str, str, str, str]]]


#: what reading one transcript may raise: the file is then listed as corrupt, not analysed
READ_ERRORS = (TranscriptError, KeyError, TypeError, ValueError, IndexError, OSError)


def unreadable(path: Path, exc: Exception, data: bytes | None = None) -> str:
    """Why ``path`` is left out, as the corrupt list says it: one of ``READ_ERRORS`` in
    words naming the file. A ``TranscriptError`` names it already; a bare Python error of
    the fast path (``list indices must be integers``: a seat that is ``1.0``) is explained
    by reading the file again strictly (``check_events``), which names the line and the
    field. Only a file that fails pays for that second reading. ``data``: its bytes, when
    already read."""
    if isinstance(exc, TranscriptError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"{path} cannot be read: {exc}"
    try:
        check_events(load_events(read_file(path) if data is None else data, str(path)), str(path))
    except TranscriptError as why:
        return str(why)
    return f"{path} cannot be analysed: {type(exc).__name__}: {exc}"


def read_trial(
    path: Path, strict: bool, detector: Detector, data: bytes | None = None
) -> tuple[list[dict[str, Any]], TrialRows, tuple[str, str, str, str]]:
    """One transcript read and checked (``read_checked``): its events, its agent-rounds
    (``trial_rows``), and who it is (path, trial id, spec name, trial digest). Raises one
    of ``READ_ERRORS`` for a file that cannot be analysed (nothing is half-appended)."""
    events = read_checked(path, strict, data)
    rows = trial_rows(events, detector)
    head = events[0]
    ident = (str(path), str(head["trial"]["trial_id"]), str(head["spec_name"]),
             trial_digest(head["trial"]))  # fmt: skip
    return events, rows, ident


def _load_chunk(paths: list[Path], strict: bool, lexicon: Lexicon | None = None) -> Chunk:
    detector = detector_for(lexicon)
    cols = RoundsColumns()
    corrupt: list[tuple[str, str]] = []
    read: list[tuple[str, str, str, str]] = []
    for path in paths:
        try:
            _, rows, ident = read_trial(path, strict, detector)
        except READ_ERRORS as exc:
            corrupt.append((str(path), unreadable(path, exc)))
            continue
        read.append(ident)
        cols.add(rows)
    if not len(cols):
        return None, len(paths), corrupt, read
    return cols.frame(), len(paths), corrupt, read


def rounds_frame(cols: dict[str, list[Any]]) -> pd.DataFrame:
    """Column lists of agent-rounds as a table (categories where values repeat)."""
    return pd.DataFrame(
        {k: (pd.Categorical(v) if k in CATEGORICAL else v) for k, v in cols.items()}
    )


CHUNK = 2000


def agent_rounds(
    source: str | Path | Iterable[str | Path],
    *,
    strict: bool = False,
    workers: int | None = None,
    lexicon: Lexicon | None = None,
) -> tuple[pd.DataFrame, LoadReport]:
    """One row per agent-round of every readable transcript, and what could not be read.

    Large runs are read in chunks by ``workers`` processes (default: one per core). Cheap
    talk is read with ``lexicon``'s vocabularies (default: ``Lexicon()``).
    """
    report = LoadReport()
    files = transcript_files(source)
    chunks = [files[i : i + CHUNK] for i in range(0, len(files), CHUNK)]
    workers = min(workers or os.cpu_count() or 1, len(chunks))
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            n = len(chunks)
            results = list(pool.map(_load_chunk, chunks, [strict] * n, [lexicon] * n))
    else:
        results = [_load_chunk(c, strict, lexicon) for c in chunks]
    frames = []
    for df_part, n, corrupt, read in results:
        report.files += n
        report.corrupt += corrupt
        report.read += read
        if df_part is not None:
            frames.append(df_part)
    if not frames:
        return pd.DataFrame(), report
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return finish_rounds(df), report


def finish_rounds(df: pd.DataFrame) -> pd.DataFrame:
    """The derived columns of an agent-round table (``stag``: 1/0, NaN without an action;
    ``valid``; ``n_received``), its categories restored after a concat."""
    for col in CATEGORICAL:  # concat of differing categories falls back to object
        if col in df.columns and not isinstance(df[col].dtype, pd.CategoricalDtype):
            df[col] = df[col].astype("category")
    action = df["action"]  # stag 1, hare 0, anything else (no action) NaN
    stag, hare = (action == "stag").to_numpy(bool), (action == "hare").to_numpy(bool)
    df["stag"] = np.where(stag, 1.0, np.where(hare, 0.0, np.nan))
    df["valid"] = action.notna()
    if "received" in df.columns:
        received = df["received"].tolist()
        df["n_received"] = np.fromiter(map(len, received), np.int64, len(received))
    return df


#: the arrow types of the agent-round columns that a chunk may leave untyped (all null)
LIST_COLUMNS = {"received": pa.list_(pa.string()), "received_from": pa.list_(pa.int64()),
                "stag_signals_from": pa.list_(pa.int64())}  # fmt: skip
TEXT_TYPES = {
    **{c: pa.dictionary(pa.int32(), pa.string()) for c in CATEGORICAL},
    **{c: pa.string() for c in ("message", "reasoning", "action")},
}


def to_arrow(df: pd.DataFrame) -> pa.Table:
    """An agent-round table as Arrow with the same types whatever the rows (categories as
    string dictionaries, texts as strings, lists of received messages and seats as lists),
    so chunks append to one file. The list columns are made with their type given (Arrow
    then checks each value against it instead of inferring one from every value: less
    than half the time of the whole table's conversion), as the inferred way where a
    value does not fit it."""
    lists: dict[str, pa.Array] = {}
    for col, kind in LIST_COLUMNS.items():
        if col in df.columns and df[col].dtype == object:
            # a value that does not fit: inferred with the rest, then cast (or refused)
            with contextlib.suppress(pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
                lists[col] = pa.array(df[col].to_numpy(), kind, from_pandas=True)
    rest = df.drop(columns=list(lists)) if lists else df
    table = pa.Table.from_pandas(rest, preserve_index=False)
    if lists:  # back in the frame's column order
        made = dict(zip(table.column_names, table.columns, strict=True)) | lists
        table = pa.table({c: made[c] for c in df.columns})
    fields = [
        pa.field(f.name, LIST_COLUMNS.get(f.name) or TEXT_TYPES.get(f.name) or f.type)
        for f in table.schema
    ]
    return table.cast(pa.schema(fields))


def save_parquet(df: pd.DataFrame, path: str | Path) -> Path:
    """The table as Parquet: lists (received messages, their senders) as Parquet lists."""
    p = Path(path)
    pq.write_table(to_arrow(df), p)
    return p


def load_parquet(path: str | Path) -> pd.DataFrame:
    """An agent-round table written by ``save_parquet`` (or by an older stagbench, which
    stored the lists as JSON text), with its derived columns."""
    df = pd.read_parquet(path)
    for col in LIST_COLUMNS:
        if col in df.columns:
            df[col] = df[col].map(lambda v: json.loads(v) if isinstance(v, str) else list(v))
    return df
