"""Run many trials at once: a fixed pool of workers pulls trials from one stream.

Within a trial, agents are called concurrently each phase; across trials, up to
``concurrency`` trials are in flight. Per-model limits live in the model wrapper,
so a slow provider throttles only its own calls. The trials may be a list or a stream
(a design too big to hold in memory is never expanded: workers pull the next trial).
Whatever a failure writes (stderr, failures/*.txt) is scrubbed of the run's API keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stagbench.agents.models.safety import redact
from stagbench.errors import BudgetExceededError, StagbenchError, StoreError
from stagbench.records import ModelCallEvent, Transcript
from stagbench.runs.compose import AgentFactory, seat_agents
from stagbench.runs.runtime import run_gc_policy
from stagbench.runs.spec import ExperimentSpec, TrialSpec
from stagbench.runs.store import RunStore, SpendLedger
from stagbench.runs.trial import play

if TYPE_CHECKING:
    from stagbench.agents.models.pool import ModelPool


@dataclass
class RunSummary:
    out_dir: str
    total: int
    already_done: int = 0
    completed: int = 0
    failed: int = 0
    corrupt: list[tuple[str, str]] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    #: what the run's model calls cost in all (trials that failed or were cut off, too)
    spent_usd: float = 0.0
    wall_s: float = 0.0
    stopped: str | None = None
    #: the signal that stopped the run, if one did
    signum: int | None = None
    #: model calls of the trials run now, and those the provider cut at max_tokens, by model
    calls: Counter[str] = field(default_factory=Counter)
    truncated: Counter[str] = field(default_factory=Counter)

    @property
    def finished(self) -> bool:
        return self.already_done + self.completed == self.total

    def count_calls(self, transcript: Transcript) -> None:
        calls: dict[str, int] = {}
        truncated: dict[str, int] = {}
        for e in transcript.events:
            # (the tag, not isinstance: a pydantic class's isinstance check on the other
            # events goes through ABCMeta, about 1% of a run's CPU)
            if e.type == "model_call":
                assert isinstance(e, ModelCallEvent)
                model = e.call.model
                calls[model] = calls.get(model, 0) + 1
                if e.call.truncated:
                    truncated[model] = truncated.get(model, 0) + 1
        self.calls.update(calls)  # the counters touched once a trial, not once a call
        self.truncated.update(truncated)


ProgressFn = Callable[[RunSummary, Transcript | None], None]


@dataclass
class StopRequest:
    """Set from outside (a signal handler) to stop a batch now: trials in flight are
    cancelled and run again on resume; finished transcripts are already on disk."""

    event: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str = ""
    signum: int | None = None

    def set(self, reason: str, signum: int | None = None) -> None:
        if not self.event.is_set():
            self.reason, self.signum = reason, signum
            self.event.set()


#: trials in flight by default: the least, and the most ``trials_in_flight`` picks
MIN_TRIALS_IN_FLIGHT = 16
MAX_TRIALS_IN_FLIGHT = 4096


def trials_in_flight(spec: ExperimentSpec) -> int:
    """The default number of trials in flight: enough to keep every model's calls in
    flight at its limit (its ``max_concurrency``, else its provider's default).

    A trial calls at most one model per seat at a time, and between its phases it calls
    none, so twice the sum of the limits over the seats of the smallest game keeps the
    slots busy; at least 16 (scripted-only runs, slow serial models), at most 4,096."""
    from stagbench.agents.models.pool import settings_for
    from stagbench.agents.models.registry import resolve
    from stagbench.runs.compose import is_scripted

    slots = 0
    for model in spec.model_strings():
        if is_scripted(model):
            continue
        try:
            info, _ = resolve(model)
        except StagbenchError:
            continue  # an unknown provider: the spec check says so
        limit = settings_for(model, spec.model_settings).max_concurrency
        slots += limit or info.concurrency()
    played = []
    for cond in spec.factors.conditions:
        try:
            played.append(spec.condition_game(cond).n_players)
        except ValueError:
            continue  # a broken condition: the spec check says so
    seats = min(played, default=spec.game.n_players)
    wanted = -(-2 * slots // max(1, seats))
    return max(MIN_TRIALS_IN_FLIGHT, min(MAX_TRIALS_IN_FLIGHT, wanted))


def run_trial(
    trial: TrialSpec, spec_name: str, pool: ModelPool | None
) -> Coroutine[Any, Any, Transcript]:
    """Seat the trial's agents and return the game to await (``play`` itself: one frame
    less for every resumption of a trial)."""
    seating = seat_agents(trial, AgentFactory(trial, pool))
    return play(trial, spec_name, seating)


async def run_trials(
    spec: ExperimentSpec,
    trials: Iterable[TrialSpec],
    store: RunStore,
    *,
    pool: ModelPool | None = None,
    concurrency: int = 16,
    progress: ProgressFn | None = None,
    stop_request: StopRequest | None = None,
    total: int | None = None,
    owns: Callable[[str], bool] | None = None,
) -> RunSummary:
    """Run every trial not already finished in ``store``; failures are recorded, not fatal.

    ``trials`` is a list, or a stream with its ``total`` given; then the finished trials
    are counted from the folder (those ``owns`` accepts: a shard's own), not from it."""
    start = time.perf_counter()
    done, corrupt = store.scan()
    pending: Iterator[TrialSpec]
    if isinstance(trials, Sequence):
        total = len(trials)
        already = sum(t.trial_id in done for t in trials)
        pending = iter([t for t in trials if t.trial_id not in done])
    else:
        if total is None:
            raise ValueError("a stream of trials needs its total")
        already = sum(1 for d in done if owns is None or owns(d))
        pending = (t for t in trials if t.trial_id not in done)
    summary = RunSummary(
        out_dir=str(store.root), total=total, already_done=already, corrupt=corrupt
    )
    stop = asyncio.Event()
    if progress:
        progress(summary, None)

    def scrub(text: str) -> str:
        return redact(text, pool.secrets()) if pool is not None else text

    # what this invocation spends, in the run's ledger: its budget holds across invocations
    ledger = (
        SpendLedger(store, lambda: pool.budget.spent_usd, by_model=pool.spent_by_model)
        if pool is not None
        else None
    )

    def account() -> None:
        if ledger is not None:
            try:
                ledger.note()
            except StoreError as exc:
                summary.stopped = scrub(str(exc))
                stop.set()

    async def worker() -> None:
        while not stop.is_set():
            trial = next(pending, None)  # no await in between: one worker at a time
            if trial is None:
                return
            try:
                transcript = await run_trial(trial, spec.name, pool)
                await store.write_async(transcript)
            except (BudgetExceededError, StoreError) as exc:
                summary.stopped = scrub(str(exc))
                stop.set()
                return
            except Exception as exc:  # one broken trial must not sink the batch
                summary.failed += 1
                summary.errors[trial.trial_id] = scrub(f"{type(exc).__name__}: {exc}")
                # the error on the first line (what the report's design check shows), then
                # the traceback
                store.record_failure(
                    trial.trial_id,
                    summary.errors[trial.trial_id] + "\n\n" + scrub(traceback.format_exc()),
                )
                account()
                if progress:
                    progress(summary, None)
                continue
            summary.completed += 1
            summary.count_calls(transcript)
            summary.input_tokens += transcript.end.input_tokens
            summary.output_tokens += transcript.end.output_tokens
            summary.cost_usd += transcript.end.cost_usd
            account()
            if progress:
                progress(summary, transcript)

    async def keep_account() -> None:  # spending in flight, not only at trials' ends
        while ledger is not None:
            await asyncio.sleep(ledger.every_s)
            account()

    n_workers = max(1, min(concurrency, total - already))
    workers = [asyncio.create_task(worker()) for _ in range(n_workers)]
    accountant = asyncio.create_task(keep_account())
    request = stop_request or StopRequest()
    try:
        with run_gc_policy():
            everything: asyncio.Future[list[None]] = asyncio.gather(*workers)
            interrupted: asyncio.Future[Any] = asyncio.ensure_future(request.event.wait())
            await asyncio.wait([everything, interrupted], return_when=asyncio.FIRST_COMPLETED)
            interrupted.cancel()
            if request.event.is_set() and not everything.done():
                summary.stopped, summary.signum = request.reason, request.signum
                stop.set()
                for w in workers:
                    w.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
            else:
                await everything
    finally:
        accountant.cancel()
        for w in workers:
            w.cancel()
        if ledger is not None:
            summary.spent_usd = ledger.spent()
            with contextlib.suppress(StoreError):  # (a full disk: said by the run's stop)
                ledger.note(final=True)
        summary.wall_s = time.perf_counter() - start
        store.update_manifest(
            status="complete" if summary.finished else "incomplete",
            finished_trials=summary.already_done + summary.completed,
            failed_trials=summary.failed,
            stopped=summary.stopped,
            last_run_wall_s=round(summary.wall_s, 3),
        )
    return summary
