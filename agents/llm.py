"""``LLMAgent``: renders a view with the templates, asks for structured output, parses it,
re-asks a bounded number of times, and records every call.

A reply that never parses becomes a recorded parse failure (no message, or no action):
it is never silently turned into stag or hare. A provider error that outlasts the
model wrapper's retries propagates, so the trial fails and is re-run later rather
than recorded with a hole that is not the model's behaviour.
"""

from __future__ import annotations

import _random
import hashlib
import json
import re
import threading
from collections.abc import Callable
from typing import Any, Literal

import orjson
from pydantic import BaseModel, Field, ValidationError, field_validator

from stagbench.agents.base import AgentView, Decision, Utterance
from stagbench.agents.models.base import ChatMessage, GenerateConfig, ModelCallRecord, OutputSchema
from stagbench.agents.models.model import Model
from stagbench.agents.prompts import (
    PARAPHRASES,
    HistoryRenderer,
    act_schema,
    reask_text,
    render_system,
    render_user,
    talk_schema,
)
from stagbench.errors import StrategyError
from stagbench.games import Action
from stagbench.records import AgentSettings, maker

_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.I)


class TalkReply(BaseModel):
    message: str = Field(max_length=2000)


class ActReply(BaseModel):
    action: Literal["stag", "hare"]
    reasoning: str | None = None

    @field_validator("action", mode="before")
    @classmethod
    def _normalise(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v


_LONG_DIGITS = re.compile(r"\d{19}")


def _loads(text: str) -> Any:
    """``json.loads``, by orjson where it gives the same: on strict JSON without integers
    past 64 bits (orjson makes those floats). Anything else (NaN, long digit runs, lone
    surrogates, and the message a parse failure records) is ``json``'s own. JSON nested
    past what ``json`` can recurse into (orjson refuses it past 1024 levels) is a
    ``json.JSONDecodeError`` like any other unreadable reply, never a ``RecursionError``."""
    if _LONG_DIGITS.search(text) is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError("JSON nested too deeply", text, 0) from None


def extract_json(text: str) -> dict[str, Any]:
    """The JSON object in a reply: bare, fenced in ```json, or embedded in prose."""
    t = text.strip()
    if "```" in t:
        t = _FENCE.sub("", t)
    try:
        data = _loads(t)
    except json.JSONDecodeError:
        start, end = t.find("{"), t.rfind("}")
        if start < 0 or end <= start:
            raise ValueError("no JSON object in the reply") from None
        try:
            data = _loads(t[start : end + 1])
        except json.JSONDecodeError as exc:
            raise ValueError(f"invalid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ValueError("the reply is JSON but not an object")
    return data


try:  # CPython's own SHA-512 (the same digest as hashlib's OpenSSL one, a third the cost)
    from _sha2 import sha512 as _sha512  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # Python 3.11
    try:
        from _sha512 import sha512 as _sha512  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # a build without them
        _sha512 = hashlib.sha512

_SEEDING = threading.local()  # one reusable generator per thread (see ``call_seed``)


def call_seed(seed: int, round_: int, phase: int | None, attempt: int) -> int:
    """A call's sampling seed: ``random.Random(f"{seed}:{round}:{phase}:{attempt}")
    .randrange(2**31)``, worked out on one reusable generator: the same string seeding
    (the text followed by its SHA-512, as one integer) and the same ``getrandbits``
    rejection, without building a ``Random`` for every call."""
    key = f"{seed}:{round_}:{phase}:{attempt}".encode()
    gen: _random.Random | None = getattr(_SEEDING, "gen", None)
    if gen is None:
        gen = _SEEDING.gen = _random.Random(0)
    gen.seed(int.from_bytes(key + _sha512(key).digest()))
    r = gen.getrandbits(32)
    while r >= 2**31:
        r = gen.getrandbits(32)
    return int(r)


def _parse(model_cls: type[BaseModel]) -> Callable[[str], BaseModel]:
    validate = model_cls.__pydantic_validator__.validate_python

    def parse(text: str) -> BaseModel:
        data = extract_json(text)
        try:  # ``model_validate`` without its Python wrapper
            reply: BaseModel = validate(data)
            return reply
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ValueError(f"{where}: {err['msg']}") from None

    return parse


_PARSE_TALK = _parse(TalkReply)
_new_config = maker(GenerateConfig)
_new_call = maker(ModelCallRecord)
_new_message = maker(ChatMessage)
_PARSE_ACT = _parse(ActReply)


class LLMAgent:
    def __init__(
        self,
        model: Model,
        seat: int,
        settings: AgentSettings,
        seed: int,
        *,
        briefs: tuple[str, ...] = (),
    ) -> None:
        if settings.prompt_variant not in PARAPHRASES:
            raise StrategyError(
                f"unknown prompt_variant {settings.prompt_variant!r}; "
                f"known: {', '.join(PARAPHRASES)}"
            )
        self.model = model
        self.seat = seat
        self.settings = settings
        self.seed = seed
        self.briefs = briefs
        self._round_brief: Callable[[AgentView], str | None] | None = None
        self._system: ChatMessage | None = None  # the same for every call of this seat
        self._history = HistoryRenderer()

    def _messages(self, view: AgentView) -> list[ChatMessage]:
        s = self.settings
        delimit = s.defence == "delimit"
        if self._system is None:
            text = render_system(view, s.prompt_variant, delimit, self.briefs)
            self._system = ChatMessage(role="system", content=text)
        brief = self._round_brief(view) if self._round_brief is not None else None
        user = render_user(view, s.prompt_variant, delimit, s.reasoning, self._history, brief)
        return [self._system, _new_message(role="user", content=user)]  # our own text

    def add_brief(self, text: str) -> None:
        """Standing instructions of this player's own, appended to its system prompt."""
        if self._system is not None:
            raise StrategyError("a brief must be given before the agent's first call")
        self.briefs = (*self.briefs, text)

    def add_round_brief(self, brief: Callable[[AgentView], str | None]) -> None:
        """Instructions of this player's own that change with the call: ``brief(view)``,
        when not None, joins that call's user prompt, before the request."""
        if self._system is not None:
            raise StrategyError("a brief must be given before the agent's first call")
        self._round_brief = brief

    def _config(self, view: AgentView, attempt: int) -> GenerateConfig:
        s = self.settings  # validated: the values are already of the config's types
        return _new_config(
            temperature=s.temperature,
            max_tokens=s.max_tokens,
            top_p=s.top_p,
            seed=call_seed(self.seed, view.round, view.phase, attempt),
            timeout_s=s.timeout_s,
        )

    async def _ask(
        self, view: AgentView, schema: OutputSchema, parse: Callable[[str], BaseModel]
    ) -> tuple[BaseModel | None, list[ModelCallRecord], str | None]:
        purpose: Literal["talk", "act"] = "talk" if view.phase is not None else "act"
        messages = self._messages(view)
        calls: list[ModelCallRecord] = []
        error: str | None = None
        for attempt in range(1, self.settings.max_reasks + 2):
            config = self._config(view, attempt)
            result = await self.model.generate(messages, config, schema, cache_seed=self.seed)
            raw = result.output.text
            parsed: BaseModel | None = None
            try:
                parsed = parse(raw)
                error = None
            except ValueError as exc:
                error = str(exc)
            output = result.output
            calls.append(
                _new_call(  # every value typed here, or from validated records
                    model=self.model.name,
                    purpose=purpose,
                    attempt=attempt,
                    messages=messages[1:],
                    raw=raw,
                    temperature=config.temperature,
                    max_tokens=config.max_tokens,
                    seed=config.seed,
                    # (the replies are flat models: their fields are their dump)
                    parsed=dict(parsed.__dict__) if parsed is not None else None,
                    parse_ok=parsed is not None,
                    error=error,
                    input_tokens=output.input_tokens,
                    output_tokens=output.output_tokens,
                    latency_s=round(result.latency_s * 10_000) / 10_000,  # 4 decimals
                    cost_usd=result.cost_usd,
                    cached=result.cached,
                    finish_reason=output.finish_reason,
                    response_model=output.model or None,
                    system_fingerprint=output.system_fingerprint,
                    request_id=output.request_id,
                    # The system prompt is the seat's, stored once in the transcript.
                    system=messages[0].content,
                )
            )
            if parsed is not None:
                return parsed, calls, None
            messages = [
                *messages,
                ChatMessage(role="assistant", content=raw),
                ChatMessage(
                    role="user",
                    content=reask_text(
                        error or "unparseable", schema, self.settings.prompt_variant
                    ),
                ),
            ]
        return None, calls, error

    async def speak(self, view: AgentView) -> Utterance:
        schema = talk_schema(self.settings.max_tokens)  # a reply of that many tokens can close
        reply, calls, error = await self._ask(view, schema, _PARSE_TALK)
        if reply is None:
            return Utterance(text=None, calls=calls, parse_failed=True, error=error)
        assert isinstance(reply, TalkReply)
        return Utterance(text=reply.message, calls=calls)

    async def act(self, view: AgentView) -> Decision:
        schema = act_schema(self.settings.reasoning, self.settings.max_tokens)
        reply, calls, error = await self._ask(view, schema, _PARSE_ACT)
        if reply is None:
            return Decision(action=None, calls=calls, parse_failed=True, error=error)
        assert isinstance(reply, ActReply)
        return Decision(action=Action(reply.action), reasoning=reply.reasoning, calls=calls)
