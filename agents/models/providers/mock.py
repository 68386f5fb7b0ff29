"""``mock/<name>``: scripted replies, registered like a real provider, so the whole pipeline
runs in tests with no key and no network.

Built-in names: ``stag``, ``hare``, ``random`` (stag or hare by the parity of the call's
seed), ``garbage`` (never parses), ``gullible`` (hunts stag but obeys an order to play an
action that it finds in the messages it received, unless its rules carry the ``delimit``
defence: a planted susceptible model for measuring injections and defences). Others come from
``register_mock`` in code or from the spec:
``[model_settings."mock/x"] options = {replies = ["...", "..."], latency_s = 0.05}``.
Replies are cycled; a callable gets (messages, schema name) and returns the text. A reply
longer than ``max_tokens`` (four characters a token) is cut there and reported with
``finish_reason = "length"``, as a server does.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import time
from collections import deque
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
from stagbench.records import maker

ReplyFn = Callable[[list[ChatMessage], str | None], str]
_new_output = maker(ModelOutput)


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


@functools.lru_cache(maxsize=1024)
def _builtin_reply(action: str, purpose: str | None, keys: tuple[str, ...] | None) -> str:
    """``_within(_fixed(action)(...), schema)`` for a schema with these ``keys``: the same
    text for the same inputs, so worked out once (a benchmark's mock must cost little)."""
    text = _fixed(action)([], purpose)
    if keys is None:
        return text
    return json.dumps({k: v for k, v in json.loads(text).items() if k in keys})


_KEYS: dict[int, tuple[OutputSchema, tuple[str, ...]]] = {}  # id -> (the schema, its keys)


def _schema_keys(schema: OutputSchema | None) -> tuple[str, ...] | None:
    if schema is None:
        return None
    known = _KEYS.get(id(schema))
    if known is not None and known[0] is schema:  # the entry keeps its schema alive
        return known[1]
    keys = tuple(schema.json_schema["properties"])
    if len(_KEYS) < 1024:
        _KEYS[id(schema)] = (schema, keys)
    return keys


_CHOICES = ("stag", "hare")


def _seeded_choice(seed: int) -> str:
    """The built-in ``random`` mock's choice for a call seed: stag for an even seed, hare
    for an odd one. A call's seed is itself a uniform draw (``agents.llm.call_seed``), so
    this is a fair coin per call, reproducible from the transcript's recorded seed, at no
    cost: a benchmark's simulated server must cost the process little (reseeding a
    Mersenne Twister for every call, as ``random.Random(seed).choice`` did up to
    stagbench 0.1's golden_llm/v2 transcripts, took 6% of the orchestrator's CPU)."""
    return _CHOICES[seed & 1]


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
        self._answered_by = f"mock/{name}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._due: deque[tuple[float, asyncio.Future[None]]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    async def generate(
        self,
        messages: list[ChatMessage],
        config: GenerateConfig,
        schema: OutputSchema | None = None,
    ) -> ModelOutput:
        if self.latency_s:  # answer no sooner than latency_s (see ``_arm``)
            loop = asyncio.get_running_loop()
            if self._loop is not loop:  # a new event loop: nothing of the last carries over
                self._loop, self._due, self._timer = loop, deque(), None
            done: asyncio.Future[None] = loop.create_future()
            self._due.append((time.monotonic() + self.latency_s, done))
            if self._timer is None:
                self._arm(loop)
            await done  # a cancelled call's future is skipped when it falls due
        purpose = schema.name if schema else None
        if self.source is None:  # random
            seed = config.seed
            action = random.choice(_CHOICES) if seed is None else _seeded_choice(seed)
            text = _builtin_reply(action, purpose, _schema_keys(schema))
        elif self.mock_name in ("stag", "hare") and self.source is BUILTIN[self.mock_name]:
            text = _builtin_reply(self.mock_name, purpose, _schema_keys(schema))
        elif self.mock_name in BUILTIN and self.source is BUILTIN[self.mock_name]:
            text = _within(self.source(messages, purpose), schema)
        elif callable(self.source):
            text = self.source(messages, purpose)
        else:
            text = self.source[next(self._counter) % len(self.source)]
        if not isinstance(text, str):  # a reply function's (or the spec's) mistake
            raise TypeError(f"mock/{self.mock_name} replied with {type(text).__name__}, not str")
        prompt_chars = sum([len(m.content) for m in messages])
        finish = "stop"
        cap = config.max_tokens * CHARS_PER_TOKEN
        if len(text) > cap:
            text, finish = text[:cap], "length"
        return _new_output(
            text=text,
            input_tokens=max(1, prompt_chars // CHARS_PER_TOKEN),
            output_tokens=max(1, len(text) // CHARS_PER_TOKEN),
            model=self._answered_by,
            finish_reason=finish,
            system_fingerprint=None,
            request_id=None,
        )

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        """Set the one timer, for the oldest waiting call. Every call of this mock waits
        the same time, so they fall due in the order they came, and each firing wakes every
        call that is due, however many (a simulated server should cost the process little).

        uvloop keeps loop time in whole milliseconds read at the start of a loop iteration,
        so a timer set late in a busy iteration fires early by that lag: it is added to the
        delay (rounded up to the millisecond), and a call found not yet due when the timer
        fires waits for the next one."""
        now = time.monotonic()
        lag = max(0.0, now - loop.time())
        self._timer = loop.call_later(self._due[0][0] - now + lag + 0.0005, self._release, loop)

    def _release(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        due, now = self._due, time.monotonic()
        while due and due[0][0] <= now:
            done = due.popleft()[1]
            if not done.done():
                done.set_result(None)
        if due:
            self._arm(loop)
