"""Transcript records: a header, then a discriminated union of events, one JSON line each.

A transcript is immutable once written; analysis, replay and the replay provider read
only these records. No wall-clock time is stored outside model-call latencies, so a trial
of scripted agents gives the same bytes every time it is run from the same spec and seed.

Format version 2 stores each seat's system prompt once, in its ``SeatInfo``; a model
call's ``messages`` then start after it (``full_messages`` puts it back). Version 1
repeated it in every call; ``stagbench.records.reader.migrate`` reads those files.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field

from stagbench.errors import TranscriptError
from stagbench.records.trial import TrialSpec

TRANSCRIPT_FORMAT = "stagbench.transcript"
TRANSCRIPT_VERSION = 2

ActionName = Literal["stag", "hare"]


class ChatMessage(BaseModel):
    model_config = ConfigDict(frozen=True)

    role: Literal["system", "user", "assistant"]
    content: str


M = TypeVar("M", bound=BaseModel)


def maker(cls: type[M]) -> Callable[..., M]:
    """A constructor of ``cls`` records that skips validation, for the few records a run
    makes millions of, from values that typed code and validated records produced (a
    model's reply is validated before it gets here; anything from outside, a file, a spec
    or a provider, goes through ``cls(...)`` or ``model_validate`` as ever).

    It takes every field by keyword, none optional (a missing or unknown name is Python's
    own ``TypeError``), and stores them in field order, as validation would: a record it
    makes equals ``cls(**values)`` and serialises to the same bytes (tests hold it to
    that). Generated once per class, like a dataclass's ``__init__``."""
    names = tuple(cls.model_fields)
    if not all(n.isidentifier() and not n.startswith("_sb_") for n in names):
        raise TypeError(f"{cls.__name__} has a field name a maker cannot take: {names}")
    body = ", ".join(f"{n!r}: {n}" for n in names)
    source = (
        f"def make_{cls.__name__}(*, {', '.join(names)}):\n"
        "    record = _sb_new(_sb_cls)\n"
        f"    _sb_set_dict(record, {{{body}}})\n"
        "    _sb_set_fields(record, _sb_fields.copy())\n"
        "    _sb_set_extra(record, None)\n"
        "    _sb_set_private(record, None)\n"
        "    return record\n"
    )
    slots = BaseModel.__dict__  # the slots every pydantic model instance has
    scope: dict[str, Any] = {
        "_sb_new": object.__new__,
        "_sb_cls": cls,
        "_sb_fields": set(names),
        "_sb_set_dict": slots["__dict__"].__set__,
        "_sb_set_fields": slots["__pydantic_fields_set__"].__set__,
        "_sb_set_extra": slots["__pydantic_extra__"].__set__,
        "_sb_set_private": slots["__pydantic_private__"].__set__,
    }
    exec(source, scope)  # noqa: S102 - the source is built from the model's field names
    make: Callable[..., M] = scope[f"make_{cls.__name__}"]
    make.__doc__ = f"A {cls.__name__} from trusted values, every field by keyword (unvalidated)."
    return make


def _is_none(value: object) -> bool:
    return value is None


def _optional(description: str) -> Any:
    """A field left out of the JSON while unset: provenance a provider did not report, or
    a v2 addition a scripted transcript never has, costs no bytes and changes no bytes."""
    return Field(default=None, exclude_if=_is_none, description=description)


class ModelCallRecord(BaseModel):
    """One model call as the transcript keeps it: prompt as seen, raw reply, parse, cost,
    and what the provider said about it (why it stopped, which model version answered,
    its request id)."""

    model: str
    purpose: Literal["talk", "act"]
    attempt: int
    messages: list[ChatMessage]
    raw: str | None
    temperature: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    parsed: dict[str, Any] | None = None
    parse_ok: bool = False
    error: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    latency_s: float = 0.0
    cost_usd: float = 0.0
    cached: bool = False
    finish_reason: str | None = _optional("why the provider stopped: stop, length, ...")
    response_model: str | None = _optional("the model version the provider says answered")
    system_fingerprint: str | None = _optional("the provider's backend configuration id")
    request_id: str | None = _optional("the provider's id of this request")
    #: the system prompt this call was sent with; stored once per seat, not per call
    system: str | None = Field(default=None, exclude=True)

    @property
    def truncated(self) -> bool:
        """The provider cut the reply at ``max_tokens``."""
        return self.finish_reason in ("length", "max_tokens")


class SeatInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    seat: int
    model: str
    role: Literal["honest", "adversary"]
    adversary: str | None = None
    system: str | None = _optional("the system prompt of this seat's model calls (v2)")


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

    def seat_info(self, seat: int) -> SeatInfo:
        """The entry of seat number ``seat``, looked up by its number: the list's order is
        not trusted (the audit refuses seats out of order, a hand-made file may list them
        so)."""
        for info in self.seats:
            if info.seat == seat:
                return info
        raise TranscriptError(f"the header has no seat {seat}")


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


BodyEvent = MessageEvent | ModelCallEvent | ActionEvent | RoundEndEvent
Event = Annotated[
    Header | MessageEvent | ModelCallEvent | ActionEvent | RoundEndEvent | TrialEndEvent,
    Field(discriminator="type"),
]


class Transcript(BaseModel):
    """A whole trial: its header, its events, its end."""

    header: Header
    events: list[BodyEvent]
    end: TrialEndEvent

    @property
    def trial_id(self) -> str:
        return self.header.trial.trial_id

    def lines(self) -> list[str]:
        return [e.model_dump_json() for e in (self.header, *self.events, self.end)]

    def to_jsonl(self) -> str:
        return self.to_jsonl_bytes().decode()

    def to_jsonl_bytes(self) -> bytes:
        """The transcript file's bytes (UTF-8): each record as ``model_dump_json`` writes it,
        by the models' compiled serialisers directly (a run writes millions of records)."""
        parts = [_to_json(self.header)]
        parts += [_to_json(e) for e in self.events]
        parts.append(_to_json(self.end))
        parts.append(b"")
        return b"\n".join(parts)

    def of_type(self, kind: type[BaseModel]) -> list[BaseModel]:
        return [e for e in self.events if isinstance(e, kind)]

    def full_messages(self, event: ModelCallEvent) -> list[ChatMessage]:
        """The messages of a call as they were sent, the seat's system prompt included."""
        return full_messages(event.call, self.header.seat_info(event.seat))


def _to_json(record: BaseModel) -> bytes:
    """``record.model_dump_json()`` as bytes: by orjson from the record's own fields where
    that writes the very same bytes (the events a run writes millions of), else by the
    model's compiled serialiser.

    orjson and pydantic write JSON alike (compact, fields in stored order, the same string
    escapes and shortest float forms, NaN as null); tests hold the two to the same bytes
    on every golden transcript and on random text and numbers. Only integers past 64 bits
    and unencodable text make orjson refuse, and those go to pydantic."""
    kind = type(record)
    if kind in _FLAT:
        try:
            return orjson.dumps(record.__dict__)
        except TypeError:  # orjson.JSONEncodeError is one
            pass
    elif kind is ModelCallEvent:
        assert isinstance(record, ModelCallEvent)
        try:
            return _call_event_json(record)
        except TypeError:
            pass
    return record.__pydantic_serializer__.to_json(record)


#: events whose fields are all plain JSON values, written as stored (nothing excluded)
_FLAT = frozenset({MessageEvent, ActionEvent, RoundEndEvent, TrialEndEvent})
_EXCLUDED = tuple(n for n, f in ModelCallRecord.model_fields.items() if f.exclude)
_UNLESS_SET = tuple(n for n, f in ModelCallRecord.model_fields.items() if f.exclude_if is _is_none)


def _call_event_json(event: ModelCallEvent) -> bytes:
    call = event.call
    messages = [m.__dict__ for m in call.messages if type(m) is ChatMessage]
    if type(call) is not ModelCallRecord or len(messages) != len(call.messages):
        raise TypeError("not plain records")  # a subclass may serialise differently
    fields = call.__dict__.copy()
    fields["messages"] = messages
    for name in _EXCLUDED:
        del fields[name]
    for name in _UNLESS_SET:
        if fields[name] is None:
            del fields[name]
    return orjson.dumps({**event.__dict__, "call": fields})


def full_messages(call: ModelCallRecord, seat: SeatInfo) -> list[ChatMessage]:
    """A call's messages with the seat's system prompt put back in front (format v2)."""
    if seat.system is None or (call.messages and call.messages[0].role == "system"):
        return list(call.messages)
    return [ChatMessage(role="system", content=seat.system), *call.messages]
