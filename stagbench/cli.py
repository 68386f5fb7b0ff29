"""The ``stagbench`` command line."""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import signal
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from stagbench.errors import StagbenchError, TranscriptError
from stagbench.records import Transcript, read_transcript
from stagbench.runs.orchestrator import RunSummary, StopRequest, run_trials, trials_in_flight
from stagbench.runs.replay import check, render
from stagbench.runs.runtime import run_async
from stagbench.runs.spec import ExperimentSpec, TrialSpec, iter_shard, load_spec, parse_shard
from stagbench.runs.store import RunLock, RunStore

if TYPE_CHECKING:
    import pandas as pd

    from stagbench.analysis.power import Plan
    from stagbench.analysis.report import ReportData, Section

app = typer.Typer(
    help="Repeated N-player Stag Hunt experiments between LLM agents.",
    no_args_is_help=True,
    add_completion=False,
)
# Piped output (logs, CI) gets wide tables instead of the 80-column default.
console = Console(soft_wrap=True, emoji=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True, emoji=False, width=None if sys.stderr.isatty() else 160)


def _arrow_on_malloc() -> None:
    """Arrow's buffers from the C library's allocator for an analysis command, unless
    ``ARROW_DEFAULT_MEMORY_POOL`` names another: the analysis reads, joins and frees large
    buffers chunk by chunk, and mimalloc, Arrow's default, keeps much of what is freed
    (the report on 100,000 trials peaks at 1.50 GB with it and 1.18 GB with malloc, in the
    same time; ``tables`` at 337 and 276 MB)."""
    import os

    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())


def _fail(exc: Exception) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(str(exc))}")
    return typer.Exit(code=2)


def _needs_models(spec: ExperimentSpec) -> bool:
    from stagbench.runs.compose import is_scripted

    return any(not is_scripted(m) for m in spec.model_strings())


@app.command()
def run(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="experiment spec (TOML)")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="results folder (default results/<name>)")
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="trials in flight at once (default: enough to keep every model's calls in "
            "flight at its max_concurrency: twice their sum over the seats, 16 to 4,096)",
        ),
    ] = None,
    cache_dir: Annotated[
        Path | None, typer.Option(help="model response cache (default RUN_DIR/cache)")
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="do not cache replies")] = False,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
    shard_: Annotated[
        str | None,
        typer.Option("--shard", help="run only shard i/n of the trials (merge with `merge`)"),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="worker processes sharing the run (one per core at most); with --executor "
            "ray, the Ray tasks (shards) to split it into (default: the cluster's CPUs)",
        ),
    ] = None,
    executor: Annotated[
        str,
        typer.Option(help="local (this machine), or ray (shards as tasks on a Ray cluster)"),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            help="with --executor ray: the cluster (ray://HOST:10001, HOST:6379, "
            "auto); default: a local Ray started for the run"
        ),  # fmt: skip
    ] = None,
    share: Annotated[int, typer.Option(min=1, hidden=True)] = 1,
    worker_of: Annotated[int | None, typer.Option(hidden=True)] = None,
    spent_before: Annotated[float | None, typer.Option(min=0.0, hidden=True)] = None,
    spent_before_models: Annotated[str | None, typer.Option(hidden=True)] = None,
) -> None:
    """Run every trial of SPEC that is not finished yet in the results folder."""
    if executor not in ("local", "ray"):
        raise _fail(StagbenchError(f"--executor must be local or ray, not {executor!r}"))
    if address is not None and executor != "ray":
        raise _fail(StagbenchError("--address goes with --executor ray"))
    if executor == "ray":
        if shard_:
            raise _fail(StagbenchError("--executor ray makes its own shards; leave out --shard"))
        if cache_dir is not None:
            raise _fail(
                StagbenchError(
                    "--cache-dir does not go with --executor ray: its tasks keep no reply "
                    "cache (each runs in a scratch folder of its own node), so a trial run "
                    "again pays for its calls again"
                )
            )
        from stagbench.runs.ray_executor import run_on_ray

        spec, _ = _preflight(spec_path)  # checked here, on the driver, before a task starts
        concurrency = concurrency or trials_in_flight(spec)
        try:
            code = run_on_ray(spec_path, out, address, workers, concurrency, console)
        except StagbenchError as exc:  # e.g. ray is not installed
            raise _fail(exc) from exc
        raise typer.Exit(code=code)
    workers = workers or 1
    if workers > 1:
        if shard_:
            raise _fail(StagbenchError("use either --shard or --workers, not both"))
        from stagbench.runs.parallel import run_workers

        spec, _ = _preflight(spec_path)
        unsplit = spec.split_problems(workers)
        if unsplit:
            raise _fail(StagbenchError(f"--workers {workers}: " + "; ".join(unsplit)))
        concurrency = concurrency or trials_in_flight(spec)
        raise typer.Exit(
            code=run_workers(
                spec_path, out, workers, concurrency, cache_dir, no_cache, console, err
            )
        )
    if worker_of is not None:  # a worker of `run --workers`: it holds the parent's lock
        from stagbench.runs.parallel import watch_parent

        watch_parent(worker_of)
    try:
        spec, text = _preflight(spec_path) if worker_of is None else load_spec(spec_path)
        suffix = ""
        if shard_:
            i, n = parse_shard(shard_)
            suffix = f"-shard{i}of{n}"
        store = RunStore(out or Path("results") / f"{spec.name}{suffix}")
        with RunLock(None) if worker_of is not None else store.lock(spec):
            store.open(spec, text)
            trials, total, owns = _trial_stream(spec, shard_)
            store.update_manifest(shard=shard_, shard_trials=total if shard_ else None)
            index = parse_shard(shard_)[0] if shard_ else 0  # its share of split limits
            if spent_before is None:  # (a worker of `run --workers` is told it)
                spent_before = store.spent_before_usd() if spec.budget_usd is not None else 0.0
            # what earlier invocations spent on each model: its max_cost_usd holds across them
            by_model = (
                store.ledger_by_model()
                if spent_before_models is None
                else _amounts(spent_before_models)
            )
            job = _run(spec, trials, total, owns, store, concurrency or trials_in_flight(spec),
                       cache_dir, no_cache, progress, share, index, spent_before,
                       by_model)  # fmt: skip
            summary = run_async(job)
    except StagbenchError as exc:
        raise _fail(exc) from exc
    for name, reason in summary.corrupt:
        err.print(
            f"[yellow]corrupt transcript quarantined and re-run:[/] {escape(f'{name}: {reason}')}"
        )
    _print_summary(summary)
    if summary.stopped:
        err.print(f"[bold red]run stopped:[/] {escape(summary.stopped)}")
        # 128 + signal number after a signal, as shells report it; 3 for a budget or disk stop
        raise typer.Exit(code=128 + summary.signum if summary.signum else 3)
    if summary.failed:
        err.print(
            f"[bold red]error:[/] {escape(store.failure_line(summary.failed, summary.total))}"
        )
        raise typer.Exit(code=1)


def _amounts(text: str) -> dict[str, float]:
    """``--spent-before-models``, as `run --workers` hands it to its workers: a JSON object
    of model strings and amounts."""
    try:
        data = json.loads(text)
        if isinstance(data, dict):
            return {str(k): float(v) for k, v in data.items()}
    except (ValueError, TypeError):
        pass
    raise _fail(StagbenchError(f"--spent-before-models is not a JSON object of amounts: {text!r}"))


def _trial_stream(
    spec: ExperimentSpec, shard_: str | None
) -> tuple[Iterable[TrialSpec], int, Callable[[str], bool] | None]:
    """The trials this process runs, streamed, their number, and which ids are its own."""
    if not shard_:
        return spec.iter_trials(), spec.n_trials, None
    i, n = parse_shard(shard_)

    def owns(trial_id: str) -> bool:
        return int(trial_id, 16) % n == i

    total = sum(1 for _ in iter_shard(spec.iter_trials(), i, n))  # counted, not kept
    return iter_shard(spec.iter_trials(), i, n), total, owns


def _preflight(spec_path: Path) -> tuple[ExperimentSpec, str]:
    """The spec, checked for everything a trial would fail on and for what this machine
    lacks, before anything is written or spent; its warnings printed."""
    try:
        spec, text = load_spec(spec_path)
        missing = spec.environment_problems()
    except StagbenchError as exc:
        raise _fail(exc) from exc
    if missing:
        raise _fail(
            StagbenchError("this machine cannot run the spec:\n  - " + "\n  - ".join(missing))
        )
    for w in spec.warnings():
        err.print(f"[yellow]warning:[/] {escape(w)}")
    return spec, text


async def _run(
    spec: ExperimentSpec,
    trials: Iterable[TrialSpec],
    total: int,
    owns: Callable[[str], bool] | None,
    store: RunStore,
    concurrency: int,
    cache_dir: Path | None,
    no_cache: bool,
    show: bool,
    share: int = 1,
    index: int = 0,
    spent_before: float = 0.0,
    spent_before_by_model: dict[str, float] | None = None,
) -> RunSummary:
    pool = None
    if _needs_models(spec):
        from stagbench.agents.models.pool import ModelPool

        pool = ModelPool(
            spec.model_settings,
            cache_dir=None if no_cache else (cache_dir or store.root / "cache"),
            budget_usd=spec.budget_usd,
            share=share,
            index=index,
            spent_before_usd=spent_before,
            spent_before_by_model=spent_before_by_model,
        )
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
    )
    tty = sys.stderr.isatty()
    # Without a terminal (a cluster job's log), a plain line every 5% of the trials instead.
    step = max(1, total // 20)
    logged = [-1]
    with Progress(*columns, console=err, disable=not show or not tty) as bar:
        task = bar.add_task(spec.name, total=total, stats="")

        def on_progress(s: RunSummary, _t: Transcript | None) -> None:
            stats = f"failed {s.failed}" if s.failed else ""
            if s.input_tokens or s.output_tokens:
                stats += f" tok {s.input_tokens + s.output_tokens:,} ${s.cost_usd:.4f}"
            done = s.already_done + s.completed
            bar.update(task, completed=done, stats=stats)
            if show and not tty and done // step != logged[0] and (done - s.already_done) > 0:
                logged[0] = done // step
                err.print(f"[{done}/{total}] {stats.strip()}".rstrip(), highlight=False)

        request = StopRequest()
        handled = _on_stop_signals(request)
        try:
            return await run_trials(
                spec,
                trials,
                store,
                pool=pool,
                concurrency=concurrency,
                progress=on_progress,
                stop_request=request,
                total=total,
                owns=owns,
            )
        finally:
            loop = asyncio.get_running_loop()
            for sig in handled:
                loop.remove_signal_handler(sig)
            if pool is not None:
                await pool.aclose()


def _on_stop_signals(request: StopRequest) -> list[signal.Signals]:
    """SIGTERM (a cluster's time limit) and SIGINT (Ctrl-C) stop the run cleanly: trials in
    flight are cancelled (they run again on resume) and the manifest says why."""
    loop = asyncio.get_running_loop()
    handled = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        reason = (
            f"interrupted by {sig.name}; finished transcripts are safe, trials in flight run "
            "again when the same command is run again"
        )
        try:
            loop.add_signal_handler(sig, request.set, reason, int(sig))
        except (NotImplementedError, RuntimeError, ValueError):  # not this platform or thread
            continue
        handled.append(sig)
    return handled


def _print_summary(s: RunSummary) -> None:
    console.print(
        f"{s.completed} trials run, {s.already_done} already done, {s.failed} failed "
        f"({s.already_done + s.completed}/{s.total} finished) in {s.wall_s:.1f}s"
    )
    if s.input_tokens or s.output_tokens:
        console.print(
            f"tokens in {s.input_tokens:,} out {s.output_tokens:,}, cost ${s.cost_usd:.4f}"
        )
    if s.spent_usd > s.cost_usd + 1e-9:  # calls of trials that failed or were cut off
        console.print(
            f"spent ${s.spent_usd:.4f} in all: ${s.spent_usd - s.cost_usd:.4f} on calls of "
            "trials that failed or were cut off (not in the transcripts' cost)"
        )
    for model, cut in sorted(s.truncated.items()):
        err.print(
            f"[yellow]warning:[/] {cut} of {s.calls[model]} replies of {model} were cut at "
            "max_tokens (finish_reason in the transcripts); raise agents.max_tokens if they "
            "should be whole"
        )
    for tid, e in list(s.errors.items())[:5]:
        err.print(f"[red]trial {tid} failed:[/] {escape(e)}")
    for line in RunStore(s.out_dir).location_lines():
        console.print(escape(line))


@app.command()
def merge(
    out: Annotated[Path, typer.Argument(help="the merged results folder")],
    sources: Annotated[list[Path], typer.Argument(help="results folders of the shards")],
) -> None:
    """Merge the results folders of shards of one spec into one folder. Exit code 1 when
    two sources hold differing copies of a trial (each conflict is listed)."""
    from stagbench.runs.store import merge_stores

    try:
        report = merge_stores(out, sources)
    except StagbenchError as exc:
        raise _fail(exc) from exc
    for name, why in report.corrupt:
        err.print(f"[yellow]not merged (corrupt):[/] {escape(f'{name}: {why}')}")
    for name, why in report.foreign:
        err.print(f"[yellow]not merged (not this spec's trial):[/] {escape(f'{name}: {why}')}")
    for name, why in report.quarantined:
        err.print(f"[yellow]moved to {escape(str(out))}/quarantine/:[/] {escape(f'{name}: {why}')}")
    for trial_id, kept, other in report.conflicts:
        what = f"trial {trial_id} has two differing copies: kept {kept}, left out {other}"
        err.print(f"[yellow]conflict:[/] {escape(what)}")
    if report.conflicts:
        err.print(
            f"{len(report.conflicts)} trials were run more than once (overlapping shards?): "
            "each keeps its first copy (the destination's own, then the sources' in the "
            "order given); the copies left out are listed above"
        )
    console.print(
        f"merged {report.copied} transcripts into {out} ({report.already} more were copies "
        f"of trials already there or met before); {report.finished}/{report.total} trials "
        "of the spec are finished"
    )
    if report.finished < report.total:
        missing = report.total - report.finished - report.failed
        failed = f"{report.failed} failed (why: {out}/failures/)" if report.failed else ""
        left = (f"{missing} trials are still missing" + (f" and {failed}" if failed else "")
                if missing else f"{failed.capitalize()}")  # fmt: skip
        console.print(f"{left}: run the spec into {out} to finish them")
    if report.conflicts:  # the merged folder is whole, but its sources disagree: say so
        raise typer.Exit(code=1)


@app.command()
def replay(
    transcript: Annotated[Path, typer.Argument(help="a transcript file (.jsonl)")],
    check_: Annotated[
        bool, typer.Option("--check", help="re-execute from recorded decisions and compare")
    ] = False,
    round_: Annotated[int | None, typer.Option("--round", help="show only this round")] = None,
) -> None:
    """Show a trial round by round, or check that it re-executes to the same outcome."""
    try:
        t = read_transcript(transcript)
    except StagbenchError as exc:
        raise _fail(exc) from exc
    if not check_:
        try:
            render(t, console, round_)
        except (KeyError, IndexError, StopIteration) as exc:
            what = TranscriptError(f"{transcript} lacks an event ({exc!r}): try --check")
            raise _fail(what) from exc
        _audited(transcript)
        return
    problems = check(t)
    if problems:
        for p in problems:
            err.print(f"[red]mismatch:[/] {escape(p)}")
        raise typer.Exit(code=1)
    console.print(
        f"[green]ok[/]: trial {t.trial_id} re-executes to the same outcome {t.end.totals}"
    )


def _audited(transcript: Path) -> None:
    """After showing a transcript: what the analysis's audit finds wrong with it (the
    analysis leaves such a file out), and exit 1; nothing when it agrees with itself."""
    from stagbench.games.audit import audit_events
    from stagbench.records import read_events

    problems = audit_events(read_events(transcript))
    if not problems:
        return
    err.print(f"[red]This transcript does not agree with itself or the game[/] (the analysis "
              f"leaves it out as corrupt; {len(problems)} problem(s)):")  # fmt: skip
    for p in problems:
        err.print(f"  [red]-[/] {escape(p)}")
    raise typer.Exit(code=1)


@app.command()
def validate(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC")],
    show: Annotated[int, typer.Option(help="list the first N trials")] = 0,
) -> None:
    """Check a spec and count its trials without running anything: every check a trial
    would fail at run time, without expanding the design."""
    try:
        spec, _ = load_spec(spec_path)
        missing = spec.environment_problems()
    except StagbenchError as exc:
        raise _fail(exc) from exc
    console.print(f"spec {spec.name!r} is valid: {spec.n_trials:,} trials")
    for t in itertools.islice(spec.iter_trials(), show):
        console.print(
            f"  {t.trial_id} {t.population} {t.condition} {t.topology} "
            f"{t.disclosure.value} {t.adversary.label} rep {t.repetition}"
        )
    for w in spec.warnings():
        err.print(f"[yellow]warning:[/] {escape(w)}")
    for m in missing:
        err.print(f"[yellow]warning:[/] `run` would refuse here: {escape(m)}")


@app.command()
def models() -> None:
    """List the model providers and whether each is usable here."""
    from rich.markup import escape
    from rich.table import Table

    from stagbench.agents.models.registry import PROVIDERS
    from stagbench.agents.scripted import STRATEGIES

    table = Table("provider", "example", "status", "what")
    table.add_row(
        "scripted",
        "scripted/tit-for-tat",
        "[green]ready[/]",
        "strategies: " + ", ".join(STRATEGIES.names()),
    )
    for _, p in PROVIDERS.items():
        status = p.status()
        colour = "green" if status == "ready" else "yellow"
        table.add_row(p.name, p.example, f"[{colour}]{escape(status)}[/]", escape(p.description))
    console.print(table)


@app.command()
def estimate(spec_path: Annotated[Path, typer.Argument(metavar="SPEC")]) -> None:
    """Calls, tokens and cost per model before spending anything."""
    from rich.table import Table

    from stagbench.runs.estimate import OUTPUT_TOKENS
    from stagbench.runs.estimate import estimate as run_estimate

    try:
        spec, _ = load_spec(spec_path)
        rows = run_estimate(spec)
    except StagbenchError as exc:
        raise _fail(exc) from exc
    n = f"{spec.n_trials:,}"
    if not rows:
        console.print(f"spec {spec.name!r}: {n} trials, no LLM calls (scripted agents only)")
        return
    table = Table("model", "trials", "calls", "input tokens", "output tokens", "cost (USD)")
    total = 0.0
    unpriced = []
    for e in rows:
        if e.cost_usd is None:
            unpriced.append(e.model)
        total += e.cost_usd or 0.0
        cost = "unpriced" if e.cost_usd is None else f"{e.cost_usd:,.4f}"
        table.add_row(
            e.model,
            str(e.trials),
            f"{e.calls:,}",
            f"{e.input_tokens:,}",
            f"{e.output_tokens:,}",
            cost,
        )
    console.print(f"spec {spec.name!r}: {n} trials")
    console.print(table)
    console.print(
        f"total ${total:,.4f}; assumes ~{OUTPUT_TOKENS['talk']}/{OUTPUT_TOKENS['act']} output "
        "tokens per talk/act reply and no re-asks"
    )
    if unpriced:
        console.print(
            f"[yellow]no price known for {', '.join(unpriced)}[/]: set input_per_mtok and "
            'output_per_mtok in [model_settings."<model>"]'
        )


#: the fewest resamples ``report --n-boot`` takes: an archetype label's confidence is the
#: share of resamples giving the same label (0 or fewer gave "confidence -0.0", 1 gave
#: 1.0 from one resample; 100 resolve it to 0.01)
MIN_N_BOOT = 100


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="a results folder")],
    out: Annotated[
        Path | None, typer.Option(help="where to write (default RUN_DIR/report)")
    ] = None,
    n_boot: Annotated[
        int,
        typer.Option(
            min=MIN_N_BOOT,
            help=(
                "trial bootstrap resamples behind each archetype label's confidence (at least "
                f"{MIN_N_BOOT}); also the fewest permutations of the tables' tests (at least "
                "500, comparisons 1000) and Firth's bootstrap (100-400). Rate intervals are "
                "not bootstrapped"
            ),
        ),
    ] = 500,
    judge: Annotated[
        str | None, typer.Option(help="also judge betrayal detection with this model")
    ] = None,
) -> None:
    """Tables (Parquet), statistics, plots and a self-contained HTML + Markdown report."""
    from stagbench.analysis.report import build

    _arrow_on_malloc()
    judged: dict[str, Any] = {}
    after: list[Callable[[ReportData], Section]] = []
    if judge:
        folder = out if out is not None else run_dir / "report"
        after.append(functools.partial(_judge, run_dir, folder, judge, judged))
    try:
        keep = ("judged_detection.parquet",) if judge else ()
        path = build(run_dir, out, n_boot=n_boot, after=after, keep=keep)
    except StagbenchError as exc:
        raise _fail(exc) from exc
    console.print(f"Report: {path.resolve()}")
    console.print(f"Markdown: {(path.parent / 'report.md').resolve()}")
    _left_out(path.parent / "design_check.parquet")
    if judge and not _judge_summary(judge, judged):
        raise typer.Exit(code=1)


def _left_out(table: Path) -> None:
    """Say on the console what the report left out (its design check's table, when this
    report wrote one: the folder's list of its files says), by kind: a report of part of
    a design must not pass for the whole in a script's log."""
    from stagbench.analysis.report import listed_files

    if table.name not in listed_files(table.parent) or not table.exists():
        return  # this report found nothing to leave out (an older table is not its)
    import pandas

    try:
        kinds = pandas.read_parquet(table)["problem"].value_counts()
    except (OSError, ValueError, KeyError):
        return
    what = ", ".join(f"{n} {kind}" for kind, n in kinds.items())
    err.print(f"[yellow]left out of the report:[/] {what} (listed at its top)")


def _judge(
    run_dir: Path, out: Path, model: str, result: dict[str, Any], data: ReportData
) -> Section:
    """The report's LLM judge section (``report.build``'s ``after``): asks ``model`` about
    every honest agent-trial that observed a betrayal, writes ``judged_detection.parquet``
    and puts the judged rows, the section's table and any error that kept the judge from
    being asked in ``result``. A call that fails is recorded as that agent-trial's
    failure; an error in setting the judge up is the section's, never the report's."""
    import pandas

    from stagbench.agents.models.pool import ModelPool
    from stagbench.analysis import design
    from stagbench.analysis import judge as judge_mod
    from stagbench.analysis.report import judge_section
    from stagbench.analysis.scan import iter_full, scan
    from stagbench.runs.compose import json_asker

    imported = data.design.imported if data.design else None
    name = str((imported or {}).get("player_name", "P{n}"))
    # the judge reads what the agents wrote: the full table's rows of the trials it judges
    at = data.agent_trials
    to_judge = (
        set(at.loc[at["betrayal_round"].notna(), "trial_id"].astype(str)) if len(at) else set()
    )
    full = scan(run_dir, lexicon=design.lexicon(run_dir), full=True, views=False)
    parts = [t.to_pandas() for t in iter_full(full, to_judge)] if to_judge else []
    texts = pandas.concat(parts, ignore_index=True) if parts else data.df.iloc[:0]

    async def judged_rows() -> pd.DataFrame:
        pool = ModelPool()
        try:
            ask = json_asker(pool, model)
            return await judge_mod.judge_detection(texts, at, ask, name)
        finally:
            await pool.aclose()

    try:
        judged = run_async(judged_rows())
    except StagbenchError as exc:  # the judge could not be set up (an unknown model, say)
        result["error"] = str(exc)
        section, _ = judge_section(data, at.iloc[:0], model, error=str(exc))
        return section
    out.mkdir(parents=True, exist_ok=True)
    judged.to_parquet(out / "judged_detection.parquet", index=False)
    section, table = judge_section(data, judged, model)
    result.update(judged=judged, table=table)
    return section


def _judge_summary(model: str, result: dict[str, Any]) -> bool:
    """Print the judge's counts, and its agreement and kappa per model and design cell
    (never pooled); False where no judgement was made (and says why)."""
    from stagbench.analysis import judge as judge_mod

    if "error" in result:
        err.print(
            f"[bold red]judge {escape(model)}: no judgement made:[/] {escape(result['error'])}"
        )
        return False
    judged: pd.DataFrame = result["judged"]
    if not len(judged):
        console.print(
            f"judge {escape(model)}: no honest agent observed a betrayal; nothing to judge"
        )
        return True
    a = judge_mod.agreement(judged)
    failures = judge_mod.failures_text(a["failures"])
    console.print(
        f"judge {escape(model)}: {a['observers']} agent-trials observed a betrayal: "
        f"{a['asked']} asked, {a['answered']} answered, {a['failed']} failed"
        + (f" ({escape(failures)})" if failures else "")
        + f", {a['not_asked']} not asked ({judge_mod.NOT_ASKED_WHY})"
    )
    if not a["answered"]:
        err.print(
            f"[bold red]judge {escape(model)}: no judgement made:[/] "
            + (f"all {a['asked']} asked failed" if a["asked"] else "none asked")
            + (f" ({escape(failures)})" if failures else "")
        )
        return False
    table: pd.DataFrame = result["table"]
    keys = [c for c in table.columns[: list(table.columns).index("observers")]]
    console.print(
        "agreement with the lexical detector per model and design cell, over the answered "
        "(judge_agreement.parquet; never pooled):"
    )
    for r in table.to_dict("records"):
        cell = " · ".join(str(r[k]) for k in keys)
        if not r["answered"]:
            console.print(f"  {escape(cell)}: {escape(r['note'])}")
            continue
        kappa = f"kappa {r['kappa']:.3f}" if r["kappa"] == r["kappa"] else r["note"]
        if r["kappa"] == r["kappa"]:
            lo, hi = r["kappa_ci_lo"], r["kappa_ci_hi"]
            kappa += f" (95% CI {lo:.3f} to {hi:.3f})" if lo == lo else f" ({r['kappa_ci']})"
        console.print(
            f"  {escape(cell)}: agreement {r['agreement_rate']:.3f} (n {r['agreement_n']}, "
            f"95% CI {r['agreement_ci_lo']:.3f} to {r['agreement_ci_hi']:.3f}), {escape(kappa)}"
        )
    return True


@app.command()
def power(
    p0: Annotated[float, typer.Option(help="stag rate in the control arm")],
    p1: Annotated[float, typer.Option(help="stag rate to detect in the treatment arm")],
    alpha: Annotated[float, typer.Option()] = 0.05,
    target: Annotated[float, typer.Option("--power", help="desired power")] = 0.8,
    cluster_size: Annotated[
        int, typer.Option(help="honest agent-rounds per trial (e.g. 3 agents x 5 rounds = 15)")
    ] = 15,
    icc: Annotated[
        float, typer.Option(help="intra-trial correlation (estimate from a pilot)")
    ] = 0.3,
    tests: Annotated[
        int | None,
        typer.Option(
            help="how many comparisons the report will Holm-adjust this one with (its "
            "Comparisons section adjusts over all of a run's): planned at alpha / TESTS "
            "[default: the pilot design's number with --from-run, else 1]",
            min=1,
            show_default=False,
        ),
    ] = None,
    from_run: Annotated[
        Path | None,
        typer.Option(
            help="estimate ICC (within design cells) and cluster size (the smallest cell's "
            "mean per trial) from a pilot run"
        ),
    ] = None,
) -> None:
    """Trials per arm needed to detect a change in stag rate from p0 to p1 by the report's
    own comparison test: the normal approximation where it is large, else the simulated
    power of that test, never below the fewest trials at which it can reject."""
    from stagbench.analysis import power as planner
    from stagbench.analysis import stats

    try:  # what a pilot cannot change, before reading one
        stats.check_power_inputs(p0, p1, alpha, target, family=tests or 1)
    except ValueError as exc:
        raise _fail(exc) from exc
    basis: list[str] = []  # how the pilot run's figures were made
    if from_run is not None:
        df = _agent_rounds(from_run)
        h = stats.population(df).dropna(subset=["stag"])
        if h.empty:
            raise _fail(StagbenchError(f"{from_run}: no honest agent-round with an action"))
        cells = stats.cell_factors(h)
        estimate = stats.icc_estimate(h, cells=cells)
        icc, note = stats.clamped_icc(estimate)
        if note:
            err.print(f"[yellow]note:[/] {escape(note)}")
        sizes = stats.cluster_sizes(h, cells=cells)
        smallest = sizes.iloc[0]
        cluster_size = max(1, round(float(smallest["cluster_size"])))
        where = (
            f"within its {len(sizes)} design cells (each trial against its own cell's rate, so "
            "differences between cells do not count as within-trial correlation)"
            if cells
            else "over its trials (one design cell)"
        )
        if estimate == estimate:  # not NaN (the note says why there is none)
            basis.append(f"From {from_run}: ICC {estimate:.3f} estimated {where}.")
        what = "cluster size = the mean number of honest valid actions per trial"
        if len(sizes) > 1 and sizes["cluster_size"].nunique() > 1:
            lo, hi = sizes["cluster_size"].min(), sizes["cluster_size"].max()
            basis.append(
                f"{what}, per cell from {lo:.1f} to {hi:.1f}: planned on the smallest "
                f"({smallest['cell']}), since fewer agent-rounds per trial need more trials; "
                "a cell with larger trials needs no more than this."
            )
        else:
            basis.append(f"{what} ({float(smallest['cluster_size']):.1f}).")
        if tests is None:
            from stagbench.analysis.report import comparison_count

            made = comparison_count(df)
            tests = max(1, made)
            basis.append(
                f"Tests: the {made} comparison{'s' if made != 1 else ''} the report makes of "
                "the pilot's design cells and Holm-adjusts together"
                + (" (one cell: planned for one test)" if not made else "")
                + " (--tests to plan for another design)."
            )
    elif not 0.0 <= icc <= 1.0:
        raise _fail(StagbenchError(f"--icc must lie in [0, 1], not {icc}"))
    planned = tests is not None
    tests = tests or 1
    try:
        plan = planner.plan_trials(p0, p1, alpha, target, cluster_size, icc, tests)
    except ValueError as exc:
        raise _fail(exc) from exc
    level = (
        f"alpha {alpha:g} (one test)"
        if tests == 1
        else f"alpha {alpha:g} Holm-adjusted over {tests} tests (planned at {alpha / tests:.4g})"
    )
    console.print(
        f"{plan.trials} trials per arm to detect {p0:g} -> {p1:g} with power {target:g} at "
        f"{level} (cluster size {cluster_size}, ICC {icc:.3f}, design effect "
        f"{1 + (cluster_size - 1) * icc:.2f})"
    )
    console.print(escape(_plan_method(plan, cluster_size, icc)))
    for line in basis:
        console.print(escape(line))
    if not planned:
        console.print(
            "The report's Comparisons Holm-adjust their p over all of a run's comparisons, "
            "which needs more trials for this power: pass --tests with their number to plan "
            "for it."
        )


def _plan_method(plan: Plan, cluster_size: int, icc: float) -> str:
    """How ``power``'s number was worked out (an ``analysis.power.Plan``), in words."""
    from stagbench.analysis import power as planner

    floor = (
        f"The report's test cannot give p <= {plan.level:.4g} with fewer than {plan.floor} "
        f"trials per arm (its smallest p at {plan.floor}: {plan.floor_p:.3g}, "
        f"{plan.floor_how})."
    )
    if plan.method == planner.NORMAL:
        return (
            f"Method: {planner.NORMAL} (Cohen's h at p <= {plan.level:.4g}, two-sided, "
            f"times the design effect): past {planner.SIMULATE_UP_TO_NORMAL} trials per arm "
            f"it is taken as is, not simulated. {floor}"
        )
    normal = (
        f"the {planner.NORMAL} says {plan.normal}, which can overstate the power of the "
        "report's permutation test"
        if plan.normal is not None
        else f"the {planner.NORMAL} has no answer for an effect this large"
    )
    lo, hi = plan.achieved_ci
    fewer = ""
    if plan.fewer is not None:
        n, got, sims = plan.fewer
        fewer = f"; {got:.2f} at {n} ({sims} data sets)"
    return (
        f"Method: {planner.SIMULATED} (its permutation of whole trials, compare_counts, "
        f"rejecting at Holm's first step p <= {plan.level:.4g}) on {plan.sims} seeded "
        f"simulated pilots of beta-binomial trials ({cluster_size} agent-round"
        f"{'s' if cluster_size != 1 else ''}, ICC {icc:.3f}): achieved power "
        f"{plan.achieved:.2f} (95% CI {lo:.2f} to {hi:.2f}) at {plan.trials} trials per "
        f"arm{fewer}. Started from the "
        f"larger of the floor and the normal approximation ({normal}). {floor}"
    )


@app.command()
def tables(
    run_dir: Annotated[Path, typer.Argument(help="a results folder")],
    out: Annotated[
        Path | None, typer.Option(help="Parquet file (default RUN_DIR/agent_rounds.parquet)")
    ] = None,
) -> None:
    """Write the agent-round table of a run as Parquet (the transcripts of its design;
    foreign and corrupt ones are listed and left out), chunk by chunk: a run of any size
    is written in the memory of one chunk."""
    import pyarrow.parquet as pq

    from stagbench.analysis.scan import iter_full

    result, checked = _scan(run_dir, full=True)
    path = out or run_dir / "agent_rounds.parquet"
    keep = set(checked.analysed) if checked.foreign else None
    rows, writer = 0, None
    try:
        for table in iter_full(result, keep):
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
            rows += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    trials = len(result.load.read) - len(checked.foreign)
    console.print(f"{rows} agent-rounds from {trials} transcripts: {path}")


def _scan(run_dir: Path, full: bool = False) -> Any:
    """One cached pass over a folder's transcripts (``analysis.scan``) and its design
    check; files left out are listed; a clear error when nothing is readable."""
    from stagbench.analysis import design
    from stagbench.analysis.scan import scan

    _arrow_on_malloc()
    try:
        result = scan(run_dir, lexicon=design.lexicon(run_dir), full=full, views=not full)
        checked = design.check(run_dir, result.load)
    except StagbenchError as exc:
        raise _fail(exc) from exc
    for name, why in result.load.corrupt:
        err.print(f"[yellow]not analysed (corrupt):[/] {escape(f'{name}: {why}')}")
    for name, why in checked.foreign:
        err.print(f"[yellow]not analysed (foreign):[/] {escape(f'{name}: {why}')}")
    if len(result.load.read) <= len(checked.foreign):
        left_out = f" ({len(result.load.corrupt)} left out as unreadable)"
        raise _fail(
            TranscriptError(
                f"no readable transcripts under {run_dir}"
                f"{left_out if result.load.corrupt else ''}: nothing to analyse"
            )
        )
    return result, checked


def _agent_rounds(run_dir: Path) -> Any:
    """The slim agent-round table of a folder's design (``analysis.scan``: no cheap-talk
    text), foreign transcripts left out."""
    result, checked = _scan(run_dir)
    df = result.rounds
    if checked.foreign:
        df = df[df["trial_id"].astype(str).isin(checked.analysed)]
    return df


@app.command("import")
def import_(
    harness: Annotated[str, typer.Argument(help="whose logs: bct (Byzantine Cheap Talk)")],
    sources: Annotated[list[Path], typer.Argument(help="the source folders", metavar="SRC...")],
    out: Annotated[Path, typer.Option("--out", "-o", help="the new results folder")],
) -> None:
    """Import another harness's logs as a stagbench results folder (then `report` it)."""
    from stagbench.runs.importers import import_logs

    try:
        result, manifest = import_logs(harness, sources, out)
    except StagbenchError as exc:
        raise _fail(exc) from exc
    for ident, source, why in result.failures:
        err.print(f"[yellow]not imported:[/] {escape(f'{source or ident}: {why}')}")
    console.print(f"imported {manifest.finished_trials} trials into {out}")
    if manifest.failed_trials:
        console.print(f"{manifest.failed_trials} could not be imported: listed above and in "
                      f"{out / 'failures'}")  # fmt: skip
        raise typer.Exit(code=1)


@app.command()
def view(
    run_dir: Annotated[Path, typer.Argument(help="a results folder")],
    out: Annotated[
        Path | None, typer.Option(help="where to write the pages (default RUN_DIR/view)")
    ] = None,
    open_browser: Annotated[
        bool, typer.Option("--open", help="open the index in the default browser")
    ] = False,
) -> None:
    """Transcripts as web pages: trials filterable by factor; per trial the graph, the
    messages, actions, payoffs and every model call. Static files: open them from disk."""
    from stagbench.viewer import build_view

    try:
        index = build_view(run_dir, out)
    except StagbenchError as exc:
        raise _fail(exc) from exc
    console.print(f"Viewer: {index.resolve()}")
    if open_browser:
        import webbrowser

        webbrowser.open(index.resolve().as_uri())


def _short_helps() -> None:
    """Each command's line in ``stagbench --help``: its docstring's first paragraph as one
    line, which the list wraps to the terminal (typer kept the source's line breaks)."""
    for info in app.registered_commands:
        doc = info.callback.__doc__ if info.callback is not None else None
        if info.short_help is None and doc:
            info.short_help = " ".join(doc.strip().split("\n\n")[0].split())


_short_helps()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
