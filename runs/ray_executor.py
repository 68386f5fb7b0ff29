"""``stagbench run SPEC --executor ray [--address ADDR]``: a run's shards as Ray tasks.

The driver (the process that ran the command) expands the design, skips what its results
folder already holds, and splits the rest into K shards by trial id, as ``--shard i/K``
does. Each shard is one Ray task that runs the normal orchestrator on its node, in a
scratch folder of its own, and streams each finished transcript back to the driver as it
finishes (a Ray streaming generator); the driver checks it (parsed, re-derived with the
engine) and writes it into the one results folder. No node needs the driver's file system.

Limits hold across the cluster as ``--workers`` keeps them on one machine: every task gets
its share of each model's concurrency (split whole, adding up to the limit), request and
token rates and cost limit, and 1/K of what the run budget has left (what the run spent
before, by its ledger, counts as spent). A task that dies (its node lost, its worker
killed) is noticed by the driver, and the trials of its shard not yet back run again in
a new task (up to ``ATTEMPTS`` tasks a shard), with what the shard's budget has left: a
task says what it has spent after each trial and every ``SPENT_EVERY_S`` while it
spends, and that is spent (its calls in its last half second are not known). A finished
transcript is never run twice. Run the same command again to resume. Tasks keep no reply
cache: each runs in a scratch folder on its node.

The driver alone holds the results folder's lock (tasks write only their scratch folders)
and checks the spec first as ``run`` does, so it needs what a local run needs: the spec's
providers, base URLs and API keys in its environment. Every node needs stagbench (the same
version) and the spec's providers installed; the calls use each node's environment.

Ray is an optional extra (``pip install 'stagbench[ray]'``), imported only here.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import queue
import signal
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from rich.console import Console
from rich.markup import escape

from stagbench.agents.models.model import usd
from stagbench.errors import MissingExtraError, StagbenchError, StoreError, TranscriptError
from stagbench.games.audit import consistent
from stagbench.records import Transcript, load_events, validate_events
from stagbench.runs.compose import needs_models
from stagbench.runs.orchestrator import RunSummary, StopRequest, run_trials
from stagbench.runs.runtime import run_async
from stagbench.runs.spec import ExperimentSpec, TrialSpec, load_spec, parse_spec, shard
from stagbench.runs.store import RunStore, SpendLedger

#: tasks tried per shard before its remaining trials are left for the next run
ATTEMPTS = 3
#: a task says what it has spent at least this often while it spends (and after each trial)
SPENT_EVERY_S = 0.5

#: what a shard task streams back, as (kind, trial id, payload): ("done", id, transcript
#: bytes), ("failed", id, error text), ("spent", "", (dollars the task has spent so far,
#: those by model))
#: after each of those, ("error", "", traceback) when the shard's run broke, and last
#: ("stopped", "", reason) when a budget or the disk stopped it
Item = tuple[str, str, Any]


def import_ray() -> ModuleType:
    try:
        import ray
    except ImportError as exc:
        raise MissingExtraError("ray", "ray", "running on a Ray cluster (--executor ray)") from exc
    return ray


# -- the task: runs on a Ray worker --------------------------------------------------
def run_shard(
    spec_text: str,
    trial_ids: list[str],
    share: int,
    concurrency: int,
    index: int = 0,
    budget: tuple[float, float] | None = None,
    models: tuple[dict[str, float], dict[str, float]] | None = None,
) -> Iterator[Item]:
    """Run the trials ``trial_ids`` of the spec with the normal orchestrator, with shard
    ``index``'s share of every limit split ``share`` ways, and yield each result as it is
    finished. ``budget``: what this task may spend and what the run had spent before this
    invocation (for its message), when the spec has a budget; ``models``: the same for
    each model's ``max_cost_usd`` (what the run spent on it before; this task's limit for
    a model, where it is given one: a restart's rest)."""
    spec = parse_spec(spec_text)
    wanted = set(trial_ids)
    trials = [t for t in spec.iter_trials() if t.trial_id in wanted]
    missing = wanted - {t.trial_id for t in trials}
    if missing:  # the driver and this node expand the spec differently: versions differ
        raise StagbenchError(
            f"{len(missing)} trial ids are not in this node's expansion of the spec; "
            "install the driver's stagbench version on every node"
        )
    with tempfile.TemporaryDirectory(prefix="stagbench-ray-") as scratch:
        # A scratch folder of the task's own: no lock (the driver holds the results
        # folder's), and it holds only this shard, so the design's disk floor is not its.
        store = RunStore(scratch)
        store.open(spec, spec_text, trials, check_space=False)
        items: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        stop = StopRequest()
        loops: list[asyncio.AbstractEventLoop] = []
        pools: list[Any] = []  # the run's model pool, once made: what it has spent
        runner = threading.Thread(
            target=_run_shard_loop,
            args=(spec, trials, store, (share, index, budget, models), concurrency, items,
                  stop, loops, pools),
            name="stagbench-shard",
        )  # fmt: skip
        runner.start()
        said = 0.0
        try:
            while True:
                try:
                    item = items.get(timeout=SPENT_EVERY_S)
                except queue.Empty:  # spending in flight, not only at trials' ends
                    spent = pools[0].budget.spent_usd if pools else 0.0
                    if spent > said:
                        said = spent
                        yield ("spent", "", (spent, pools[0].spent_by_model()))
                    continue
                if item is None:
                    break
                yield item
        finally:  # the driver cancelled the task, or it is being torn down: stop the run
            if runner.is_alive() and loops:
                # its loop may have closed already, the thread not yet ended (Python 3.13
                # met that race): the run is over then, with nothing left to stop
                with contextlib.suppress(RuntimeError):
                    loops[0].call_soon_threadsafe(stop.set, "the Ray task was cancelled")
            runner.join()


def _run_shard_loop(
    spec: ExperimentSpec,
    trials: list[TrialSpec],
    store: RunStore,
    split: tuple[
        int, int, tuple[float, float] | None, tuple[dict[str, float], dict[str, float]] | None
    ],
    concurrency: int,
    items: queue.SimpleQueue[Item | None],
    stop: StopRequest,
    loops: list[asyncio.AbstractEventLoop],
    pools: list[Any],
) -> None:
    reported: set[str] = set()
    share, index, budget, models = split

    def progress(summary: RunSummary, transcript: Transcript | None) -> None:
        if transcript is not None:
            data = store.path_for(transcript.trial_id).read_bytes()  # as the orchestrator wrote it
            items.put(("done", transcript.trial_id, data))
        for trial_id, error in summary.errors.items():
            if trial_id not in reported:
                reported.add(trial_id)
                items.put(("failed", trial_id, error))
        if pools:  # what it has spent, failed trials' calls included: a restart's budget
            items.put(("spent", "", (pools[0].budget.spent_usd, pools[0].spent_by_model())))

    async def main() -> RunSummary:
        loops.append(asyncio.get_running_loop())
        pool = None
        if needs_models(trials):
            from stagbench.agents.models.pool import ModelPool

            limit, before = budget if budget is not None else (None, 0.0)
            before_models, model_limits = models if models is not None else ({}, {})
            pool = ModelPool(spec.model_settings, budget_usd=spec.budget_usd, share=share,
                             index=index, spent_before_usd=before, limit_usd=limit,
                             spent_before_by_model=before_models,
                             model_limits_usd=model_limits)  # fmt: skip
            pools.append(pool)
        try:
            return await run_trials(
                spec, trials, store, pool=pool, concurrency=concurrency, progress=progress,
                stop_request=stop,
            )  # fmt: skip
        finally:
            if pool is not None:
                await pool.aclose()

    try:
        stopped = run_async(main()).stopped
        if pools:
            items.put(("spent", "", (pools[0].budget.spent_usd, pools[0].spent_by_model())))
        if stopped:
            items.put(("stopped", "", stopped))
    except BaseException:  # handed to the driver, which reruns the shard's rest
        items.put(("error", "", traceback.format_exc()))
    finally:
        items.put(None)


# -- the driver ----------------------------------------------------------------------
@dataclass
class _Shard:
    index: int
    #: its trials not back yet (neither finished nor failed)
    left: set[str]
    attempts: int = 0
    #: tracebacks of runs that broke in its tasks
    errors: list[str] = field(default_factory=list)
    stopped: bool = False
    #: what its tasks may spend together (its share of the run budget's rest), what its
    #: ended tasks spent, and what its running task has said it spent so far
    limit_usd: float | None = None
    spent_usd: float = 0.0
    spending_usd: float = 0.0
    #: the same by model, for the models' max_cost_usd
    spent_models: Counter[str] = field(default_factory=Counter)
    spending_models: dict[str, float] = field(default_factory=dict)

    def end_task(self) -> None:
        """Its running task ended: what it said it spent is spent."""
        self.spent_usd, self.spending_usd = self.spent_usd + self.spending_usd, 0.0
        self.spent_models.update(self.spending_models)
        self.spending_models = {}

    def spent_on(self) -> Counter[str]:
        """What its tasks spent on each model, the running one's so far included."""
        return self.spent_models + Counter(self.spending_models)


@dataclass
class RayRun:
    """What the driver saw: counts for the summary line, and why it stopped if it did."""

    total: int
    already_done: int
    completed: int = 0
    failed: int = 0
    lost: int = 0
    stopped: str = ""
    signum: int | None = None
    errors: dict[str, str] = field(default_factory=dict)
    #: what its tasks said they spent
    spent_usd: float = 0.0


def run_on_ray(
    spec_path: Path,
    out: Path | None,
    address: str | None,
    tasks: int | None,
    concurrency: int,
    console: Console,
) -> int:
    """The ``run --executor ray`` command: returns the exit code (0 all finished, 1 some
    trials failed or were lost, 2 bad input, 3 stopped by a budget or the disk, 128+n a
    signal), as ``run`` does."""
    ray = import_ray()
    try:
        spec, text = load_spec(spec_path)
        store = RunStore(out or Path("results") / spec.name)
        lock = store.lock(spec)  # held by the driver alone: the tasks write no shared folder
    except StagbenchError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}")
        return 2
    with lock:
        return _run_locked(ray, spec, text, store, address, tasks, concurrency, console)


def _run_locked(
    ray: ModuleType,
    spec: ExperimentSpec,
    text: str,
    store: RunStore,
    address: str | None,
    tasks: int | None,
    concurrency: int,
    console: Console,
) -> int:
    try:
        store.open(spec, text)
        trials = spec.trials()
        done, corrupt = store.scan()
    except StagbenchError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}")
        return 2
    for name, reason in corrupt:
        console.print(
            f"[yellow]corrupt transcript quarantined and re-run:[/] {name}: {escape(reason)}"
        )
    pending = [t for t in trials if t.trial_id not in done]
    result = RayRun(total=len(trials), already_done=len(trials) - len(pending))
    start = time.perf_counter()
    k = 0
    if pending:
        if not ray.is_initialized():
            try:
                if address is None:  # a local Ray for this run, gone with it
                    ray.init(log_to_driver=False, include_dashboard=False)
                else:
                    ray.init(address=address, log_to_driver=False)
            except Exception as exc:  # no cluster there, a version mismatch, ...
                where = f"at {address}" if address else "(a local one)"
                raise StagbenchError(f"cannot start or reach a Ray cluster {where}: {exc}") from exc
        k = tasks or max(1, int(ray.cluster_resources().get("CPU", 1)))
        k = max(1, min(k, len(pending)))
        while tasks is None and k > 1 and spec.split_problems(k):
            k -= 1  # the cluster's CPUs, as many as every model's max_concurrency can serve
        unsplit = spec.split_problems(k)
        if unsplit:  # asked for (--workers) but not possible
            console.print(f"[bold red]error:[/] {escape(f'--workers {k}: ' + '; '.join(unsplit))}")
            return 2
        # the run's budget holds across its invocations: what they spent is spent
        before = store.spent_before_usd() if spec.budget_usd is not None else 0.0
        _drive(ray, spec, text, store, pending, k, concurrency, before, result, console)
    wall = time.perf_counter() - start
    finished = result.already_done + result.completed
    store.update_manifest(
        status="complete" if finished == len(trials) else "incomplete",
        finished_trials=finished,
        failed_trials=result.failed,
        stopped=result.stopped or None,
        shard=None,
        shard_trials=None,
        workers=k or None,
        last_run_wall_s=round(wall, 3),
    )
    console.print(
        f"{result.completed} trials run on Ray in {k} tasks, {result.already_done} already "
        f"done, {result.failed} failed ({finished}/{len(trials)} finished) in {wall:.1f}s"
    )
    for trial_id, error in list(result.errors.items())[:5]:
        console.print(f"[red]trial {trial_id} failed:[/] {escape(error)}")
    for line in store.location_lines():
        console.print(line)
    if result.signum is not None:
        console.print(f"[bold red]run stopped:[/] {escape(result.stopped)}")
        return 128 + result.signum
    if result.stopped:
        console.print(f"[bold red]run stopped:[/] {escape(result.stopped)}")
        return 3
    if result.failed or result.lost:
        return 1
    return 0


def _drive(
    ray: ModuleType,
    spec: ExperimentSpec,
    text: str,
    store: RunStore,
    pending: list[TrialSpec],
    k: int,
    concurrency: int,
    before: float,
    result: RayRun,
    console: Console,
) -> None:
    """Submit the shards, take in what they stream back, and resubmit a dead task's rest
    with what its shard's budget has left (what its dead tasks said they spent is spent)."""
    task = ray.remote(num_cpus=1, max_retries=0)(run_shard).options(num_returns="streaming")
    per_task = max(1, math.ceil(concurrency / k))
    ids = {t.trial_id for t in pending}
    limit = None if spec.budget_usd is None else max(0.0, spec.budget_usd - before) / k
    shards = [
        _Shard(i, {t.trial_id for t in shard(pending, i, k)}, limit_usd=limit) for i in range(k)
    ]
    # each model's max_cost_usd holds across invocations too: what they spent on it is spent
    before_models = store.ledger_by_model()
    caps = {m: c for m in spec.model_strings() if (c := _max_cost(spec, m)) is not None}
    per_shard = {m: max(0.0, c - before_models.get(m, 0.0)) / k for m, c in caps.items()}
    inbox: queue.SimpleQueue[tuple[_Shard, Item | BaseException | None]] = queue.SimpleQueue()
    live: dict[int, Any] = {}  # shard index -> its running generator
    # what the tasks say they spent, in the run's ledger: its budget holds across invocations
    ledger = SpendLedger(
        store,
        lambda: sum(s.spent_usd + s.spending_usd for s in shards),
        by_model=lambda: sum((s.spent_on() for s in shards), Counter()),
    )

    def submit(s: _Shard) -> None:
        s.attempts += 1
        budget = None if s.limit_usd is None else (max(0.0, s.limit_usd - s.spent_usd), before)
        spent_on = s.spent_on()
        models = (before_models, {m: max(0.0, c - spent_on[m]) for m, c in per_shard.items()})
        generator = task.remote(text, sorted(s.left), k, per_task, s.index, budget, models)
        live[s.index] = generator
        threading.Thread(target=_pump, args=(ray, generator, s, inbox), daemon=True).start()

    for s in shards:
        if s.left:
            submit(s)
    stopped_by: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        # SIGTERM (a cluster's time limit) or Ctrl-C: cancel the tasks; finished work is safe.
        stopped_by.append(signum)
        for generator in list(live.values()):
            ray.cancel(generator, force=True)

    main_thread = threading.current_thread() is threading.main_thread()
    previous = (
        {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        if main_thread
        else {}
    )
    step = max(1, len(pending) // 20)
    try:
        while live:
            try:
                s, item = inbox.get(timeout=0.5)  # a timeout, so that signals get through
            except queue.Empty:
                continue
            if item is None or isinstance(item, BaseException):
                live.pop(s.index, None)
                s.end_task()
                broke = item if isinstance(item, BaseException) else s.errors[-1:]
                if broke and s.left and not stopped_by and not s.stopped:
                    _task_died(s, broke, result, console, submit)
                continue
            kind, trial_id, payload = item
            if kind == "done" and trial_id in s.left:
                s.left.discard(trial_id)
                try:
                    _store(store, trial_id, payload, ids)
                except (TranscriptError, StoreError) as exc:
                    result.failed += 1
                    result.errors[trial_id] = str(exc)
                    store.record_failure(trial_id, f"received from a Ray task: {exc}")
                    continue
                result.completed += 1
                if result.completed % step == 0:
                    console.print(f"[{result.already_done + result.completed}/{result.total}]")
            elif kind == "failed" and trial_id in s.left:
                s.left.discard(trial_id)
                result.failed += 1
                result.errors[trial_id] = payload
                store.record_failure(trial_id, payload)
            elif kind == "spent":
                s.spending_usd, s.spending_models = float(payload[0]), dict(payload[1])
                ledger.note()
            elif kind == "error":
                s.errors.append(payload)
            elif kind == "stopped":  # a budget or the disk stopped that task
                s.stopped = True
                result.stopped = result.stopped or payload
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        ledger.note(final=True)
    if stopped_by:
        signum = stopped_by[0]
        result.signum = signum
        result.stopped = (
            f"interrupted by {signal.Signals(signum).name}; finished transcripts are "
            "safe, the rest run when the same command is run again"
        )
    result.lost = sum(len(s.left) for s in shards)
    result.spent_usd = sum(s.spent_usd + s.spending_usd for s in shards)
    if result.stopped and not stopped_by and spec.budget_usd is not None:
        result.stopped += (
            f" (the run's budget_usd is {usd(spec.budget_usd)}: its tasks spent "
            f"{usd(result.spent_usd)} in all"
            + (f", its earlier invocations {usd(before)})" if before else ")")
        )


def _max_cost(spec: ExperimentSpec, model: str) -> float | None:
    from stagbench.agents.models.pool import settings_for

    return settings_for(model, spec.model_settings).max_cost_usd


def _task_died(
    s: _Shard,
    error: BaseException | list[str],
    result: RayRun,
    console: Console,
    submit: Callable[[_Shard], None],
) -> None:
    if isinstance(error, BaseException):
        lines = str(error).strip().splitlines()
        why = f"{type(error).__name__}: {lines[0] if lines else ''}"
    else:  # the run inside the task broke: the traceback's last line says how
        why = error[-1].strip().splitlines()[-1]
    if s.limit_usd is not None and s.spent_usd >= s.limit_usd:
        console.print(
            f"[red]Ray task of shard {s.index} died ({escape(why)}) with its share of the "
            f"budget spent ({usd(s.spent_usd)} of {usd(s.limit_usd)}); {len(s.left)} trials "
            "left for the next run[/]"
        )
        s.stopped = True
        result.stopped = result.stopped or (
            f"shard {s.index}'s share of the run's cost limit (budget_usd) is spent"
        )
    elif s.attempts < ATTEMPTS:
        console.print(
            f"[yellow]Ray task of shard {s.index} died ({escape(why)}); its {len(s.left)} "
            "unfinished trials run again in a new task[/]"
        )
        submit(s)
    else:
        console.print(
            f"[red]Ray task of shard {s.index} died ({escape(why)}) after {s.attempts} tasks; "
            f"{len(s.left)} trials left for the next run[/]"
        )


def _pump(
    ray: ModuleType,
    generator: Any,
    s: _Shard,
    inbox: queue.SimpleQueue[tuple[_Shard, Item | BaseException | None]],
) -> None:
    """Take a task's stream item by item (on its own thread: ``ray.get`` blocks)."""
    try:
        for ref in generator:
            inbox.put((s, ray.get(ref)))
    except BaseException as exc:  # the task died or was cancelled
        inbox.put((s, exc))
        return
    inbox.put((s, None))


def _store(store: RunStore, trial_id: str, data: bytes, ids: set[str]) -> None:
    """Check a transcript a task sent (its trial is one asked for, it parses, and it
    re-derives with the engine) before it joins the results folder."""
    if trial_id not in ids:
        raise TranscriptError(f"a task sent trial {trial_id}, which was not asked for")
    source = f"trial {trial_id} from a Ray task"
    events = consistent(load_events(data, source), source)
    if validate_events(events, source).trial_id != trial_id:
        raise TranscriptError(f"{source} holds another trial")
    store.write_received(trial_id, data)
