"""``Model``: the one wrapper that owns retries, limits, caching, and token/cost accounting.

Providers only translate a request to their API and map errors to ``ModelError``. Every
reply is redacted of the model's keys here, before it is cached, parsed or recorded (a
misconfigured server may echo the key it was sent).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from dataclasses import dataclass, field

from aiolimiter import AsyncLimiter
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
)

from stagbench.agents.models.base import (
    ChatMessage,
    GenerateConfig,
    ModelAPI,
    ModelOutput,
    OutputSchema,
)
from stagbench.agents.models.cache import ResponseCache, cache_key
from stagbench.agents.models.deadlines import Deadlines
from stagbench.agents.models.pricing import Price
from stagbench.agents.models.safety import clean_text, cut, redact
from stagbench.agents.models.settings import ModelSettings
from stagbench.agents.models.slots import Slots
from stagbench.errors import BudgetExceededError, ModelError

DEFAULT_CONCURRENCY = 32
DEFAULT_RETRIES = 5
MAX_BACKOFF_S = 60.0
#: the longest error text a failed call reports (cut only after keys are redacted)
MAX_ERROR_CHARS = 2000
#: more tokens than this in one call is not a count a provider can mean (and a count past
#: 64 bits could not even be written to a transcript)
MAX_TOKENS_PER_CALL = 10**9
#: the reply fields a server writes, any of which could echo the key it was sent
_SERVER_TEXT = ("text", "model", "finish_reason", "system_fingerprint", "request_id")

__all__ = ["Model", "Result", "RunBudget", "Usage", "clean_text", "redact", "usd"]


@dataclass
class Usage:
    calls: int = 0
    cached: int = 0
    retries: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    #: replies the provider cut at max_tokens
    truncated: int = 0


@dataclass
class RunBudget:
    """A cost limit shared by every model of a run: what this process may spend
    (``limit_usd``, its share of what the run's budget had left when it started) and has
    spent; for its message, the run's ``budget_usd`` (``run_usd``), what the run had spent
    before (``before_usd``: ``RunStore.spent_before_usd``) and how many processes share
    the rest."""

    limit_usd: float | None = None
    spent_usd: float = 0.0
    run_usd: float | None = None
    before_usd: float = 0.0
    share: int = 1

    def exceeded(self) -> str:
        """Why the run stops (its limit is reached), with the money in full."""
        run = usd(self.limit_usd or 0.0 if self.run_usd is None else self.run_usd)
        spent = usd(self.spent_usd)
        before = usd(self.before_usd)
        if self.share > 1:
            left = usd(max(0.0, (self.run_usd or 0.0) - self.before_usd))
            what = (
                f"this process's share of the run's cost limit {run} (budget_usd) is spent: "
                f"{usd(self.limit_usd or 0.0)}, 1 of {self.share} of the {left} it had left"
                + (f" (its earlier invocations spent {before})" if self.before_usd else "")
                + f"; this process spent {spent}"
            )
        elif self.before_usd:
            what = (
                f"the run reached its cost limit {run} (budget_usd): its earlier invocations "
                f"spent {before} and this one {spent}"
            )
        else:
            what = f"the run reached its cost limit {run} (budget_usd; spent {spent})"
        return f"{what}; raise budget_usd in the spec and run again to go on"


@dataclass
class CostLimit:
    """A model's ``max_cost_usd`` (``model_usd``), held across its run's invocations and
    processes: what this process may spend on the model (``limit_usd``, its share of what
    the limit had left when it started); for its message, what the run's earlier
    invocations spent on the model (``before_usd``, from the run's ledger) and how many
    processes share the rest."""

    limit_usd: float
    model_usd: float
    before_usd: float = 0.0
    share: int = 1

    def exceeded(self, model: str, spent_usd: float) -> str:
        """Why calls to ``model`` stop (this process spent ``spent_usd`` on it)."""
        limit, spent, before = usd(self.model_usd), usd(spent_usd), usd(self.before_usd)
        if self.share > 1:
            left = usd(max(0.0, self.model_usd - self.before_usd))
            what = (
                f"this process's share of model {model}'s cost limit {limit} (max_cost_usd) "
                f"is spent: {usd(self.limit_usd)}, 1 of {self.share} of the {left} it had left"
                + (f" (earlier invocations spent {before} on it)" if self.before_usd else "")
                + f"; this process spent {spent}"
            )
        elif self.before_usd:
            what = (
                f"model {model} reached its cost limit {limit} (max_cost_usd): the run's "
                f"earlier invocations spent {before} on it and this one {spent}"
            )
        else:
            what = f"model {model} reached its cost limit {limit} (spent {spent})"
        return f"{what}; raise max_cost_usd to go on"


def usd(x: float) -> str:
    """An amount of money as the messages give it: cents from a dollar up, else four
    places without trailing zeros ($0.015, never $0.01 for it)."""
    if x >= 1:
        return f"${x:,.2f}"
    places = f"{x:.4f}".rstrip("0").split(".")[1]
    return f"${x:.{max(2, len(places))}f}"


@dataclass
class Result:
    output: ModelOutput
    latency_s: float
    cost_usd: float
    cached: bool
    attempts: int


def _clean(output: ModelOutput) -> ModelOutput:
    """The reply with text that can always be written (no lone surrogates)."""
    text = clean_text(output.text)
    return output if text is output.text else output.model_copy(update={"text": text})


def _scrubbed(output: ModelOutput, secrets: list[str]) -> ModelOutput:
    """The reply with every piece of a key in ``secrets`` redacted from what the server
    wrote (a misconfigured echo or debug proxy puts the key it was sent in its reply)."""
    update: dict[str, str] = {}
    for name in _SERVER_TEXT:
        value = getattr(output, name)
        if value:
            safe = redact(value, secrets)
            if safe != value:
                update[name] = safe
    return output.model_copy(update=update) if update else output


def _bad_usage(output: ModelOutput) -> str | None:
    """What is wrong with the reply's token counts, if they are negative, not integers or
    absurd: they would make a negative (or unwritable) cost that keeps budget_usd and
    max_cost_usd from ever stopping a run."""
    for what, n in (("input", output.input_tokens), ("output", output.output_tokens)):
        if type(n) is not int or not 0 <= n <= MAX_TOKENS_PER_CALL:
            return (
                f"{what} token count {cut(repr(n), 40)} is not a count from 0 to "
                f"{MAX_TOKENS_PER_CALL:,}"
            )
    return None


def _paced(per_minute: float, floor: float) -> AsyncLimiter:
    capacity = max(floor, per_minute / 60.0)
    return AsyncLimiter(capacity, 60.0 * capacity / per_minute)


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError) or (isinstance(exc, ModelError) and exc.retryable)


@dataclass
class Model:
    """A provider API plus everything every provider needs around it."""

    api: ModelAPI
    settings: ModelSettings = field(default_factory=ModelSettings)
    cache: ResponseCache | None = None
    price: Price | None = None
    secrets: list[str] = field(default_factory=list)
    default_concurrency: int = DEFAULT_CONCURRENCY
    backoff_base_s: float = 0.5
    usage: Usage = field(default_factory=Usage)
    run_budget: RunBudget = field(default_factory=RunBudget)
    #: the model's ``max_cost_usd`` (``ModelPool`` gives it, held across invocations);
    #: None: the settings' own, as one process's whole limit
    cost_limit: CostLimit | None = None

    def __post_init__(self) -> None:
        self.name = self.api.name
        cap = self.settings.max_cost_usd
        if self.cost_limit is None and cap is not None:
            self.cost_limit = CostLimit(limit_usd=cap, model_usd=cap)
        if self.api.secret:
            self.secrets = [*self.secrets, self.api.secret]
        self._deadlines = Deadlines()
        self._sem = Slots(self.settings.max_concurrency or self.default_concurrency)
        rpm, tpm = self.settings.requests_per_minute, self.settings.tokens_per_minute
        # Buckets hold about a second's worth, so a per-minute limit is paced, not burst.
        self._rpm = _paced(rpm, floor=1.0) if rpm else None
        self._tpm = _paced(tpm, floor=min(tpm, 4096.0)) if tpm else None
        self._rng = random.Random(0)

    @property
    def max_retries(self) -> int:
        r = self.settings.max_retries
        return DEFAULT_RETRIES if r is None else r

    def _delay(self, exc: BaseException | None, failed_attempt: int) -> float:
        """How long to wait after attempt ``failed_attempt`` (1-based) failed with ``exc``."""
        if isinstance(exc, ModelError) and exc.retry_after is not None:
            return min(max(exc.retry_after, 0.0), MAX_BACKOFF_S)
        base = self.settings.retry_backoff_s
        base = self.backoff_base_s if base is None else base
        backoff = base * 2 ** (failed_attempt - 1)
        return float(min(backoff * (0.5 + self._rng.random()), MAX_BACKOFF_S))

    def _wait(self, state: RetryCallState) -> float:
        # tenacity counts from the first retry; the first attempt ran outside it.
        exc = state.outcome.exception() if state.outcome else None
        return self._delay(exc, state.attempt_number + 1)

    def _check_budget(self) -> None:
        run = self.run_budget
        if run.limit_usd is not None and run.spent_usd >= run.limit_usd:
            raise BudgetExceededError(run.exceeded())
        cap = self.cost_limit
        if cap is not None and self.usage.cost_usd >= cap.limit_usd:
            raise BudgetExceededError(cap.exceeded(self.name, self.usage.cost_usd))

    async def _limits(self, messages: list[ChatMessage], config: GenerateConfig) -> None:
        if self._rpm is not None:
            await self._rpm.acquire()
        if self._tpm is not None:
            # Estimate: ~4 characters a token for the prompt, plus the reply budget.
            estimate = sum(len(m.content) for m in messages) / 4 + config.max_tokens
            await self._tpm.acquire(min(math.ceil(estimate), self._tpm.max_rate))

    async def generate(
        self,
        messages: list[ChatMessage],
        config: GenerateConfig,
        schema: OutputSchema | None = None,
        cache_seed: int | None = None,
    ) -> Result:
        """One reply, from the cache or the provider, retried on transient errors."""
        key = None
        if self.cache is not None:
            key = cache_key(self.name, self.api.base_url, messages, config, schema, cache_seed)
            hit = self.cache.get(key)
            if hit is not None and _bad_usage(hit) is not None:  # a cache written before
                hit = None  # counts were checked: ask again
            if hit is not None:
                self.usage.cached += 1
                if self.secrets:  # a cache written before replies were redacted
                    hit = _scrubbed(hit, self.secrets)
                return Result(_clean(hit), 0.0, 0.0, True, 0)  # (or before they were cleaned)
        self._check_budget()
        attempts = [0]
        start = time.perf_counter()
        try:
            try:  # the common case, one attempt, pays no retry machinery
                output, latency = await self._attempt(messages, config, schema, attempts)
            except ModelError as first:
                if not first.retryable or self.max_retries == 0:
                    raise
                await asyncio.sleep(self._delay(first, 1))
                async for attempt in AsyncRetrying(
                    stop=stop_after_attempt(self.max_retries),
                    wait=self._wait,
                    retry=retry_if_exception(_retryable),
                    reraise=True,
                ):
                    with attempt:
                        output, latency = await self._attempt(messages, config, schema, attempts)
        except ModelError as exc:
            self.usage.errors += 1
            # Redact before cutting: a cut through a key would leave a piece of it behind.
            text = cut(redact(str(exc), self.secrets), MAX_ERROR_CHARS)
            raise ModelError(
                f"{text} (after {attempts[0]} attempt(s))", retryable=exc.retryable
            ) from None
        output = _clean(output)
        if self.secrets:  # before the reply is cached, parsed, recorded or sent on
            output = _scrubbed(output, self.secrets)
        cost = self.price.cost(output.input_tokens, output.output_tokens) if self.price else 0.0
        self.usage.calls += 1
        self.usage.input_tokens += output.input_tokens
        self.usage.output_tokens += output.output_tokens
        self.usage.cost_usd += cost
        self.run_budget.spent_usd += cost
        self.usage.latency_s += time.perf_counter() - start
        if output.finish_reason in ("length", "max_tokens"):
            self.usage.truncated += 1
        if self.cache is not None and key is not None:
            self.cache.put(key, output)
        return Result(output, latency, cost, False, attempts[0])

    async def _attempt(
        self,
        messages: list[ChatMessage],
        config: GenerateConfig,
        schema: OutputSchema | None,
        attempts: list[int],
    ) -> tuple[ModelOutput, float]:
        attempts[0] += 1
        if attempts[0] > 1:
            self.usage.retries += 1
        sem = self._sem
        if not sem.try_acquire():  # a free slot costs no coroutine
            await sem.acquire()
        try:
            # again once a slot is had: a call queued for it while the limit was reached
            # must not be made (rt31: 69 calls against a $0.10 limit with one slot)
            self._check_budget()
            if self._rpm is not None or self._tpm is not None:
                await self._limits(messages, config)
            t0 = time.perf_counter()
            call = self._deadlines.start(config.timeout_s)
            try:
                output = await self.api.generate(messages, config, schema)
            except (TimeoutError, asyncio.CancelledError) as exc:
                if isinstance(exc, TimeoutError) or self._deadlines.expired(call):
                    raise ModelError(
                        f"{self.name}: no reply within {config.timeout_s:g}s", retryable=True
                    ) from exc
                raise
            finally:
                self._deadlines.finish(call)
            bad = _bad_usage(output)
            if bad is not None:
                raise ModelError(f"{self.name}: malformed response: {bad}", retryable=True)
            return output, time.perf_counter() - t0
        finally:
            sem.release()

    async def aclose(self) -> None:
        await self.api.aclose()
