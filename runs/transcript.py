"""Versioned transcript records: a header, then a discriminated union of events, one per line.

A transcript is immutable once written. Analysis and replay read only these files.
No wall-clock time is stored outside model-call latencies, so a trial of scripted
agents gives the same bytes every time it is run from the same spec and seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from agents.models.base import ModelCallRecord
from runs.spec import TrialSpec
from stagbench import TRANSCRIPT_FORMAT, TRANSCRIPT_VERSION
from stagbench.errors import TranscriptError

ActionName = Literal["stag", "hare"]


class SeatInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    seat: int
    model: str
    role: Literal["honest", "adversary"]
    adversary: str | None = None


class Header(BaseModel):
    model_config = ConfigDict(frozen=True)

    type: Literal["header"] = "header"
    format: str = TRANSCRIPT_FORMAT
    version: int = TRANSCRIPT_VERSION
    stagbench_version: str
    spec_name: str
    trial: TrialSpec
    seats: list[SeatInfo]
    edges: list[tuple[int, int]]
    directed: bool


class MessageEvent(BaseModel):
    """A cheap-talk message; ``text`` None is a player who stayed silent (no receivers)."""

    model_config = ConfigDict(frozen=True)

    type: Literal["message"] = "message"
    round: int
    phase: int
    sender: int
    receivers: list[int]
    text: str | None
    parse_failed: bool = False
    error: str | None = None


class ModelCallEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    type: Literal["model_call"] = "model_call"
    round: int
    phase: int | None
    seat: int
    call: ModelCallRecord


class ActionEvent(BaseModel):
    """A player's move; ``action`` None is a recorded parse failure, never a default."""

    model_config = ConfigDict(frozen=True)

    type: Literal["action"] = "action"
    round: int
    seat: int
    action: ActionName | None
    reasoning: str | None = None
    parse_failed: bool = False
    error: str | None = None


class RoundEndEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    type: Literal["round_end"] = "round_end"
    round: int
    actions: list[ActionName | None]
    payoffs: list[float]
    stag_count: int
    hunt_succeeded: bool


class TrialEndEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    type: Literal["trial_end"] = "trial_end"
    rounds_played: int
    totals: list[float]
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    parse_failures: int = 0


Event = Annotated[
    Header | MessageEvent | ModelCallEvent | ActionEvent | RoundEndEvent | TrialEndEvent,
    Field(discriminator="type"),
]
_EVENT = TypeAdapter(Event)


class Transcript(BaseModel):
    """A whole trial: its header, its events, its end."""

    header: Header
    events: list[MessageEvent | ModelCallEvent | ActionEvent | RoundEndEvent]
    end: TrialEndEvent

    @property
    def trial_id(self) -> str:
        return self.header.trial.trial_id

    def lines(self) -> list[str]:
        return [e.model_dump_json() for e in (self.header, *self.events, self.end)]

    def to_jsonl(self) -> str:
        return "\n".join(self.lines()) + "\n"

    def of_type(self, kind: type[BaseModel]) -> list[BaseModel]:
        return [e for e in self.events if isinstance(e, kind)]


def parse_transcript(text: str, source: str = "<transcript>") -> Transcript:
    """Parse JSONL text; a truncated, corrupt or foreign file raises ``TranscriptError``."""
    lines = [ln for ln in text.split("\n") if ln.strip()]
    if not lines:
        raise TranscriptError(f"{source} is empty")
    events = []
    for no, line in enumerate(lines, 1):
        try:
            events.append(_EVENT.validate_json(line))
        except ValidationError as exc:
            raise TranscriptError(
                f"{source} line {no} is not a valid event: {exc.errors()[0]['msg']}"
            ) from exc
    header, *body = events
    if not isinstance(header, Header):
        raise TranscriptError(f"{source} does not start with a header")
    if header.format != TRANSCRIPT_FORMAT or header.version > TRANSCRIPT_VERSION:
        raise TranscriptError(
            f"{source} is {header.format} v{header.version}; this stagbench reads "
            f"{TRANSCRIPT_FORMAT} up to v{TRANSCRIPT_VERSION}"
        )
    end = body.pop() if body else None
    if not isinstance(end, TrialEndEvent):
        raise TranscriptError(f"{source} is truncated: it has no trial_end event")
    middle: list[MessageEvent | ModelCallEvent | ActionEvent | RoundEndEvent] = []
    for e in body:
        if isinstance(e, Header | TrialEndEvent):
            raise TranscriptError(f"{source} has a header or trial_end in the middle")
        middle.append(e)
    rounds = sum(isinstance(e, RoundEndEvent) for e in middle)
    if rounds != end.rounds_played:
        raise TranscriptError(
            f"{source} records {rounds} rounds but its end says {end.rounds_played}"
        )
    return Transcript(header=header, events=middle, end=end)


def read_transcript(path: str | Path) -> Transcript:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise TranscriptError(f"transcript not found: {p}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise TranscriptError(f"cannot read transcript {p}: {exc}") from exc
    return parse_transcript(text, str(p))
