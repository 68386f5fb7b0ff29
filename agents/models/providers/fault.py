"""``fault/<inner model>``: injects faults in front of any model, for testing how a run
survives them. Options (``[model_settings.fault] options = {...}``), each a probability
per call unless said otherwise:

- ``error_rate``: an HTTP 500 (retryable)
- ``fatal_rate``: an HTTP 400 (not retryable: the trial fails and is re-run later)
- ``rate_limit_rate``: a 429 with ``retry_after_s`` (default 0.01)
- ``burst_every`` / ``burst_len``: every N calls, a burst of this many 429s
- ``timeout_rate``: an answer slower than any sensible timeout (``hang_s``, default 3600)
- ``garbage_rate``: a reply that is not JSON
- ``seed``: the fault sequence is reproducible
- ``inner_options``: the wrapped model's own options

No other key is accepted (``FAULT_OPTIONS`` in ``providers/__init__.py``).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from stagbench.agents.models.base import (
    ChatMessage,
    GenerateConfig,
    ModelAPI,
    ModelOutput,
    OutputSchema,
)
from stagbench.errors import ModelError

GARBAGE = "<<the model rambles without any JSON at all>>"


class FaultAPI(ModelAPI):
    def __init__(self, inner: ModelAPI, options: dict[str, Any]) -> None:
        self.inner = inner
        self.base_url = inner.base_url
        self.secret = inner.secret
        self.o = options
        self.rng = random.Random(options.get("seed", 0))
        self.calls = 0
        self.injected: dict[str, int] = {}

    def _p(self, key: str) -> bool:
        return self.rng.random() < float(self.o.get(key, 0.0))

    def _note(self, kind: str) -> None:
        self.injected[kind] = self.injected.get(kind, 0) + 1

    async def generate(
        self,
        messages: list[ChatMessage],
        config: GenerateConfig,
        schema: OutputSchema | None = None,
    ) -> ModelOutput:
        self.calls += 1
        every, length = int(self.o.get("burst_every", 0)), int(self.o.get("burst_len", 0))
        retry_after = float(self.o.get("retry_after_s", 0.01))
        if every and (self.calls % every) < length:
            self._note("burst_429")
            raise ModelError("fault: HTTP 429 (burst)", retryable=True, retry_after=retry_after)
        if self._p("rate_limit_rate"):
            self._note("429")
            raise ModelError("fault: HTTP 429", retryable=True, retry_after=retry_after)
        if self._p("error_rate"):
            self._note("500")
            raise ModelError("fault: HTTP 500", retryable=True)
        if self._p("fatal_rate"):
            self._note("400")
            raise ModelError("fault: HTTP 400", retryable=False)
        if self._p("timeout_rate"):
            self._note("hang")
            await asyncio.sleep(float(self.o.get("hang_s", 3600)))
        out = await self.inner.generate(messages, config, schema)
        if self._p("garbage_rate"):
            self._note("garbage")
            return out.model_copy(update={"text": GARBAGE})
        return out

    async def aclose(self) -> None:
        await self.inner.aclose()
