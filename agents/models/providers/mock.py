"""``mock/<name>``: scripted replies, registered like a real provider, so the whole pipeline
runs in tests with no key and no network.

Built-in names: ``stag``, ``hare``, ``random`` (seeded by the call's seed), ``garbage``
(never parses), ``gullible`` (hunts stag but obeys an order to play an action that it
finds in the messages it received, unless its rules carry the ``delimit`` defence: a
planted susceptible model for measuring injections and defences). Others come from
``register_mock`` in code or from the spec:
``[model_settings."mock/x"] options = {replies = ["...", "..."], latency_s = 0.05}``.
Replies are cycled; a callable gets (messages, schema name) and returns the text. A reply
longer than ``max_tokens`` (four characters a token) is cut there and reported with
``finish_reason = "length"``, as a server does.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from itertools import count

from stagbench.agents.models.base import (
    ChatMessage,
    GenerateConfig,
    ModelAPI,
    ModelOutput,
    OutputSchema,
)
from stagbench.errors import ModelNotFoundError

ReplyFn = Callable[[list[ChatMessage], str | None], str]


def _fixed(action: str) -> ReplyFn:
    def reply(messages: list[ChatMessage], purpose: str | None) -> str:
        if purpose == "talk":
            return json.dumps({"message": f"I will hunt {action} this round."})
        return json.dumps({"reasoning": f"I always hunt {action}.", "action": action})

    return reply


def _within(text: str, schema: OutputSchema | None) -> str:
    """A built-in reply cut to the schema's keys, as a server with structured output does
    (no ``reasoning`` when the act schema asks for none)."""
    if schema is None:
        return text
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return text  # garbage stays garbage
    if not isinstance(data, dict):
        return text
    return json.dumps({k: v for k, v in data.items() if k in schema.json_schema["properties"]})


def _garbage(messages: list[ChatMessage], purpose: str | None) -> str:
    return "Hmm, let me think about what the other hunters might do..."


def _gullible(messages: list[ChatMessage], purpose: str | None) -> str:
    # The prompt quotes received messages only in its user turn; the rules (system turn)
    # say whether the delimit defence fences them, and then this model heeds it fully.
    from stagbench.agents.prompts import DELIMIT_RULE
    from stagbench.agents.scripted import order_in

    system = " ".join(m.content for m in messages if m.role == "system")
    user = [m.content for m in messages if m.role == "user"]
    order = None if DELIMIT_RULE in system or not user else order_in(user[0])
    action = order.value if order is not None else "stag"
    if purpose == "talk":
        return json.dumps({"message": f"I will hunt {action} this round."})
    why = "I was told to." if order is not None else "Stag pays most if we all hunt it."
    return json.dumps({"reasoning": why, "action": action})


BUILTIN: dict[str, ReplyFn] = {
    "stag": _fixed("stag"),
    "hare": _fixed("hare"),
    "garbage": _garbage,
    "gullible": _gullible,
}
REGISTERED: dict[str, list[str] | ReplyFn] = {}


def register_mock(name: str, replies: list[str] | ReplyFn) -> None:
    """Make ``mock/<name>`` answer with ``replies`` (cycled) or a function."""
    REGISTERED[name] = replies


CHARS_PER_TOKEN = 4


def mock_source(
    name: str, replies: list[str] | ReplyFn | None = None
) -> list[str] | ReplyFn | None:
    """What ``mock/<name>`` answers with (None: the built-in ``random``); a clear error for
    a name nobody registered."""
    source = replies if replies is not None else REGISTERED.get(name) or BUILTIN.get(name)
    if source is None and name != "random":
        known = ", ".join(sorted({*BUILTIN, *REGISTERED, "random"}))
        raise ModelNotFoundError(
            f"no mock named {name!r}; known: {known} (or give options.replies in the spec)"
        )
    return source


class MockAPI(ModelAPI):
    def __init__(
        self, name: str, replies: list[str] | ReplyFn | None = None, latency_s: float = 0.0
    ) -> None:
        source = mock_source(name, replies)
        self.source = source
        self.mock_name = name
        self.latency_s = latency_s
        self._counter = count()

    async def generate(
        self,
        messages: list[ChatMessage],
        config: GenerateConfig,
        schema: OutputSchema | None = None,
    ) -> ModelOutput:
        if self.latency_s:
            # A loop's timers may fire a little early (uvloop keeps time in whole, cached
            # milliseconds); a benchmark's latency must be a floor, so sleep any remainder
            # (in whole milliseconds: a shorter sleep would spin).
            deadline = time.perf_counter() + self.latency_s
            await asyncio.sleep(self.latency_s)
            while (left := deadline - time.perf_counter()) > 0:
                await asyncio.sleep(max(left, 0.001))
        purpose = schema.name if schema else None
        if self.source is None:  # random
            rng = random.Random(config.seed)
            text = _fixed(rng.choice(["stag", "hare"]))(messages, purpose)
            text = _within(text, schema)
        elif self.mock_name in BUILTIN and self.source is BUILTIN[self.mock_name]:
            text = _within(self.source(messages, purpose), schema)
        elif callable(self.source):
            text = self.source(messages, purpose)
        else:
            text = self.source[next(self._counter) % len(self.source)]
        prompt_chars = sum(len(m.content) for m in messages)
        finish = "stop"
        if len(text) > config.max_tokens * CHARS_PER_TOKEN:
            text, finish = text[: config.max_tokens * CHARS_PER_TOKEN], "length"
        return ModelOutput(
            text=text,
            input_tokens=max(1, prompt_chars // CHARS_PER_TOKEN),
            output_tokens=max(1, len(text) // CHARS_PER_TOKEN),
            model=f"mock/{self.mock_name}",
            finish_reason=finish,
        )
