"""``LLMAgent``: renders a view with the templates, asks for structured output, parses it,
re-asks a bounded number of times, and records every call.

A reply that never parses becomes a recorded parse failure (no message, or no action):
it is never silently turned into stag or hare. A provider error that outlasts the
model wrapper's retries propagates, so the trial fails and is re-run later rather
than recorded with a hole that is not the model's behaviour.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

from stagbench.agents.base import AgentView, Decision, Utterance
from stagbench.agents.models.base import ChatMessage, GenerateConfig, ModelCallRecord, OutputSchema
from stagbench.agents.models.model import Model
from stagbench.agents.prompts import (
    PARAPHRASES,
    TALK_SCHEMA,
    HistoryRenderer,
    act_schema,
    reask_text,
    render_system,
    render_user,
)
from stagbench.errors import StrategyError
from stagbench.games import Action
from stagbench.records import AgentSettings

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


def extract_json(text: str) -> dict[str, Any]:
    """The JSON object in a reply: bare, fenced in ```json, or embedded in prose."""
    t = _FENCE.sub("", text.strip())
    try:
        data = json.loads(t)
    except json.JSONDecodeError:
        start, end = t.find("{"), t.rfind("}")
        if start < 0 or end <= start:
            raise ValueError("no JSON object in the reply") from None
        try:
            data = json.loads(t[start : end + 1])
        except json.JSONDecodeError as exc:
            raise ValueError(f"invalid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ValueError("the reply is JSON but not an object")
    return data


def _parse(model_cls: type[BaseModel]) -> Callable[[str], BaseModel]:
    def parse(text: str) -> BaseModel:
        data = extract_json(text)
        try:
            return model_cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ValueError(f"{where}: {err['msg']}") from None

    return parse


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
        self._system: ChatMessage | None = None  # the same for every call of this seat
        self._history = HistoryRenderer()

    def _messages(self, view: AgentView) -> list[ChatMessage]:
        s = self.settings
        delimit = s.defence == "delimit"
        if self._system is None:
            text = render_system(view, s.prompt_variant, delimit, self.briefs)
            self._system = ChatMessage(role="system", content=text)
        user = render_user(view, s.prompt_variant, delimit, s.reasoning, self._history)
        return [self._system, ChatMessage(role="user", content=user)]

    def add_brief(self, text: str) -> None:
        """Standing instructions of this player's own, appended to its system prompt."""
        if self._system is not None:
            raise StrategyError("a brief must be given before the agent's first call")
        self.briefs = (*self.briefs, text)

    def _config(self, view: AgentView, attempt: int) -> GenerateConfig:
        s = self.settings
        call_seed = random.Random(f"{self.seed}:{view.round}:{view.phase}:{attempt}")
        return GenerateConfig(
            temperature=s.temperature,
            max_tokens=s.max_tokens,
            top_p=s.top_p,
            seed=call_seed.randrange(2**31),
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
            calls.append(
                ModelCallRecord(
                    model=self.model.name,
                    purpose=purpose,
                    attempt=attempt,
                    # The system prompt is the seat's, stored once in the transcript.
                    messages=messages[1:],
                    system=messages[0].content,
                    raw=raw,
                    temperature=config.temperature,
                    max_tokens=config.max_tokens,
                    seed=config.seed,
                    parsed=parsed.model_dump() if parsed else None,
                    parse_ok=parsed is not None,
                    error=error,
                    input_tokens=result.output.input_tokens,
                    output_tokens=result.output.output_tokens,
                    latency_s=round(result.latency_s, 4),
                    cost_usd=result.cost_usd,
                    cached=result.cached,
                    finish_reason=result.output.finish_reason,
                    response_model=result.output.model or None,
                    system_fingerprint=result.output.system_fingerprint,
                    request_id=result.output.request_id,
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
        reply, calls, error = await self._ask(view, TALK_SCHEMA, _parse(TalkReply))
        if reply is None:
            return Utterance(text=None, calls=calls, parse_failed=True, error=error)
        assert isinstance(reply, TalkReply)
        return Utterance(text=reply.message, calls=calls)

    async def act(self, view: AgentView) -> Decision:
        schema = act_schema(self.settings.reasoning)
        reply, calls, error = await self._ask(view, schema, _parse(ActReply))
        if reply is None:
            return Decision(action=None, calls=calls, parse_failed=True, error=error)
        assert isinstance(reply, ActReply)
        return Decision(action=Action(reply.action), reasoning=reply.reasoning, calls=calls)
