"""Scaling past one process: shards merged equal one run; several endpoints share load."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stagbench.agents.models.base import ChatMessage, GenerateConfig
from stagbench.agents.models.pool import ModelPool
from stagbench.agents.models.settings import ModelSettings
from stagbench.cli import app
from stagbench.errors import SpecError
from stagbench.runs.spec import parse_shard, parse_spec, shard
from stagbench.runs.store import RunStore

from fake_openai import Behaviour, FakeOpenAI
from helpers import load_benchmark

runner = CliRunner()
SPEC = """
name = "sharded"
seed = 6
repetitions = 10
[factors]
models = ["scripted/random(p=0.6)", "scripted/grim-trigger"]
topologies = ["complete", "ring"]
adversaries = ["none", "soft(p=0.5)"]
"""


def test_shards_partition_the_design() -> None:
    trials = parse_spec(SPEC).trials()
    parts = [shard(trials, i, 3) for i in range(3)]
    ids = [t.trial_id for p in parts for t in p]
    assert sorted(ids) == sorted(t.trial_id for t in trials)
    assert all(len(p) > 12 for p in parts)
    with pytest.raises(SpecError):
        parse_shard("3/3")
    with pytest.raises(SpecError):
        parse_shard("x")


def test_sharded_runs_merge_into_the_unsharded_result(tmp_path: Path) -> None:
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC)
    whole = tmp_path / "whole"
    assert runner.invoke(app, ["run", str(spec), "--out", str(whole)]).exit_code == 0
    shards = []
    for i in range(3):
        out = tmp_path / f"part{i}"
        res = runner.invoke(app, ["run", str(spec), "--out", str(out), "--shard", f"{i}/3"])
        assert res.exit_code == 0, res.output
        shards.append(str(out))
    # Merge two shards first: the merged folder says what is missing.
    merged = tmp_path / "merged"
    res = runner.invoke(app, ["merge", str(merged), *shards[:2]])
    assert res.exit_code == 0 and "still missing" in res.output
    res = runner.invoke(app, ["merge", str(merged), *shards])
    assert res.exit_code == 0 and "80/80 trials of the spec are finished" in res.output
    a = {p.name: p.read_bytes() for p in RunStore(whole).transcript_paths()}
    b = {p.name: p.read_bytes() for p in RunStore(merged).transcript_paths()}
    assert a == b
    merged_manifest = RunStore(merged).read_manifest()
    assert merged_manifest is not None and merged_manifest.status == "complete"
    other = tmp_path / "other.toml"
    other.write_text(SPEC.replace("seed = 6", "seed = 7"))
    assert runner.invoke(app, ["run", str(other), "--out", str(tmp_path / "o")]).exit_code == 0
    bad = runner.invoke(app, ["merge", str(tmp_path / "m2"), shards[0], str(tmp_path / "o")])
    assert bad.exit_code == 2 and "different specs" in bad.output


async def test_several_endpoints_share_the_load() -> None:
    with FakeOpenAI() as a, FakeOpenAI() as b:
        a.default = b.default = Behaviour(delay_s=0.05)
        pool = ModelPool({"vllm": ModelSettings(base_url=[a.base_url, b.base_url])})
        model = pool.get("vllm/some/model")
        msgs = [ChatMessage(role="user", content="hi")]
        await asyncio.gather(*(model.generate(msgs, GenerateConfig()) for _ in range(40)))
        await pool.aclose()
    assert len(a.requests) + len(b.requests) == 40
    # both serve: 20 each when every call starts before any ends; on a loaded machine the
    # one that answers first is less busy and takes more, as it should
    assert min(len(a.requests), len(b.requests)) >= 12


async def test_the_least_busy_endpoint_takes_the_next_call() -> None:
    """Calls go to the endpoint with the fewest calls in flight: of 20 calls taken in turn
    by two lanes, each making its next call as its last one ends, one endpoint that
    answers ten times faster than the other serves most."""
    with FakeOpenAI() as fast, FakeOpenAI() as slow:
        fast.default = Behaviour(delay_s=0.01)
        slow.default = Behaviour(delay_s=0.1)
        pool = ModelPool({"vllm": ModelSettings(base_url=[slow.base_url, fast.base_url])})
        model = pool.get("vllm/some/model")
        msgs = [ChatMessage(role="user", content="hi")]

        left = [20]

        async def lane() -> None:
            while left[0]:
                left[0] -= 1
                await model.generate(msgs, GenerateConfig())

        await asyncio.gather(lane(), lane())
        await pool.aclose()
    assert len(fast.requests) + len(slow.requests) == 20
    assert len(fast.requests) >= 14


def test_workers_beyond_a_models_max_concurrency_are_refused(tmp_path: Path) -> None:
    """Each worker needs a call in flight of every model: a limit of 1 over 2 workers was
    2 calls in flight (rt26); it is refused, naming the model, before anything runs."""
    spec = tmp_path / "s.toml"
    spec.write_text(
        'name = "one-slot"\n[factors]\nmodels = ["mock/stag"]\n'
        "[model_settings.mock]\nmax_concurrency = 1\n"
    )
    res = runner.invoke(app, ["run", str(spec), "--out", str(tmp_path / "o"), "--workers", "2"])
    assert res.exit_code == 2, res.output
    assert "mock/stag: max_concurrency = 1 cannot be split over 2 processes" in res.output
    assert not (tmp_path / "o").exists()


def test_worker_processes_give_the_single_process_result(tmp_path: Path) -> None:
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC)
    one, two = tmp_path / "one", tmp_path / "two"
    assert runner.invoke(app, ["run", str(spec), "--out", str(one)]).exit_code == 0
    res = runner.invoke(app, ["run", str(spec), "--out", str(two), "--workers", "2"])
    assert res.exit_code == 0, res.output
    assert "80/80 trials finished" in res.output
    a = {p.name: p.read_bytes() for p in RunStore(one).transcript_paths()}
    b = {p.name: p.read_bytes() for p in RunStore(two).transcript_paths()}
    assert a == b
    manifest = RunStore(two).read_manifest()
    assert manifest is not None and manifest.status == "complete" and manifest.workers == 2
    both = runner.invoke(app, ["run", str(spec), "--workers", "2", "--shard", "0/2"])
    assert both.exit_code == 2


def test_share_splits_limits() -> None:
    s = ModelSettings(max_concurrency=5, requests_per_minute=600, max_cost_usd=10).share(2)
    assert (s.max_concurrency, s.requests_per_minute, s.max_cost_usd) == (3, 300, 5)
    # rt26: every process took ceil(limit / k), k * ceil(limit / k) in all (4 for 3 over
    # 2, 8 for 1 over 8); the shares now add up to the limit exactly
    for limit in (3, 5, 7, 8, 64):
        for k in range(1, limit + 1):
            shares = [ModelSettings(max_concurrency=limit).share(k, i).max_concurrency
                      for i in range(k)]  # fmt: skip
            assert sum(s or 0 for s in shares) == limit and min(s or 0 for s in shares) >= 1
    assert ModelSettings().share(4) == ModelSettings()
    pool = ModelPool({"mock": ModelSettings(max_concurrency=64)}, budget_usd=8, share=4)
    assert pool.get("mock/stag").settings.max_concurrency == 16
    assert pool.budget.limit_usd == 2
    # rt26: a share's stop said "the run reached its cost limit $0.01" for $0.015 of $0.03
    split = ModelPool(budget_usd=0.03, share=2, spent_before_usd=0.01)
    assert split.budget.limit_usd == pytest.approx(0.01)
    split.budget.spent_usd = 0.0102
    assert split.budget.exceeded().startswith(
        "this process's share of the run's cost limit $0.03 (budget_usd) is spent: $0.01, "
        "1 of 2 of the $0.02 it had left (its earlier invocations spent "
        "$0.01); this process spent $0.0102"
    )
    assert (
        ModelPool(budget_usd=0.03, share=2)
        .budget.exceeded()
        .startswith(
            "this process's share of the run's cost limit $0.03 (budget_usd) is spent: $0.015,"
        )
    )


async def test_calls_in_flight_reach_the_model_limit_across_trials(tmp_path: Path) -> None:
    """A trial has at most 4 calls in flight (one per seat, round by round in lockstep);
    with 16 trials in flight the model's limit of 12 is reached and never passed, so
    calls of several trials overlap."""
    from stagbench.agents.models.base import ModelAPI, ModelOutput, OutputSchema
    from stagbench.runs.orchestrator import run_trials

    spec = parse_spec(
        'name = "inflight"\nrepetitions = 16\n[game]\nrounds = 2\n[agents]\nmax_reasks = 0\n'
        '[factors]\nmodels = ["mock/random"]\n'
        '[model_settings."mock/random"]\nmax_concurrency = 12\n'
    )
    pool = ModelPool(spec.model_settings, cache_dir=None)
    model = pool.get("mock/random")
    inner = model.api
    counts = {"now": 0, "peak": 0, "calls": 0}

    class Counting(ModelAPI):
        name = inner.name

        async def generate(
            self,
            messages: list[ChatMessage],
            config: GenerateConfig,
            schema: OutputSchema | None = None,
        ) -> ModelOutput:
            counts["now"] += 1
            counts["calls"] += 1
            counts["peak"] = max(counts["peak"], counts["now"])
            try:
                await asyncio.sleep(0.01)
                return await inner.generate(messages, config, schema)
            finally:
                counts["now"] -= 1

    model.api = Counting()
    store = RunStore(tmp_path / "r")
    trials = spec.trials()
    store.open(spec, "", trials)
    summary = await run_trials(spec, trials, store, pool=pool, concurrency=16)
    assert summary.completed == 16
    assert counts["calls"] == 16 * 2 * 2 * 4  # trials x rounds x (talk + act) x seats
    assert counts["peak"] == 12


def test_lockstep_ceiling_simulation() -> None:
    """The benchmark's zero-CPU ceiling, on cases worked by hand."""
    lockstep_ceiling = load_benchmark("bench_llm").lockstep_ceiling

    assert lockstep_ceiling([[4, 4]], slots=4, in_flight=1, latency=0.05) == 1.0
    assert lockstep_ceiling([[4, 4]], slots=8, in_flight=1, latency=0.05) == 0.5
    # two trials of phases [3, 1] on 4 slots: t=0 runs A's 3 calls and one of B's; at 50 ms
    # A's second phase (1 call) and B's last 2 calls; at 100 ms B's second phase: 8 calls
    # in 150 ms against a bound of 4 per 50 ms
    assert abs(lockstep_ceiling([[3, 1], [3, 1]], 4, 2, 0.05) - 8 / 12) < 1e-9


FILL = """
name = "fill"
[factors]
models = {models}
{conditions}
{settings}
"""


def _in_flight(models: str, settings: str = "", conditions: str = "") -> int:
    from stagbench.runs.orchestrator import trials_in_flight

    text = FILL.format(models=models, settings=settings, conditions=conditions)
    return trials_in_flight(parse_spec(text))


def test_trials_in_flight_fill_every_models_limit() -> None:
    """By default, twice the models' summed call limits over the seats of the smallest
    game: each trial calls at most one model per seat at a time."""
    assert _in_flight('["scripted/tit-for-tat"]') == 16  # nothing to fill
    mock = '[model_settings."mock/random"]\nmax_concurrency = 256'
    assert _in_flight('["mock/random"]', mock) == 128  # 2 x 256 / 4 seats
    # the provider's default (32) where the spec sets none, per model string
    assert _in_flight('["mock/random", "mock/stag"]') == 32
    # a provider table laid under a model's own: 100 + 300
    both = '[model_settings.mock]\nmax_concurrency = 100\n[model_settings."mock/stag"]\nmax_concurrency = 300'
    assert _in_flight('["mock/random", ["mock/stag", "scripted/tit-for-tat"]]', both) == 200
    # a condition with a smaller game sets the seats
    two = 'conditions = [{name = "four"}, {name = "pair", n_players = 2}]'
    assert _in_flight('["mock/random"]', mock, two) == 256
    # the smallest game played: [game] itself is not when every condition changes it
    six = 'conditions = [{name = "six", n_players = 6}]'
    assert _in_flight('["mock/random"]', mock, six) == 86  # 2 x 256 / 6, rounded up
    # a serial engine takes one call at a time: the floor
    assert _in_flight('["local/smollm2-135m"]') == 16
    huge = '[model_settings."mock/random"]\nmax_concurrency = 100000'
    assert _in_flight('["mock/random"]', huge) == 4096


def test_run_defaults_its_trials_in_flight_to_fill_the_limits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stagbench.cli as cli

    seen: list[int] = []
    real = cli.run_trials

    async def spy(*args: object, concurrency: int, **kw: object) -> object:
        seen.append(concurrency)
        return await real(*args, concurrency=concurrency, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(cli, "run_trials", spy)
    spec = tmp_path / "s.toml"
    spec.write_text(
        FILL.format(
            models='["mock/random"]',
            conditions="",
            settings='[model_settings."mock/random"]\nmax_concurrency = 96',
        ).replace('name = "fill"', 'name = "fill"\nrepetitions = 2')
    )
    for extra, want in (([], 48), (["--concurrency", "5"], 5)):
        out = tmp_path / f"out{want}"
        res = runner.invoke(app, ["run", str(spec), "--out", str(out), "--no-progress", *extra])
        assert res.exit_code == 0, res.output
        assert seen[-1] == want


def test_a_second_shard_is_refused_in_a_folder_a_shard_works_in_as_the_readme_says(
    tmp_path: Path,
) -> None:
    """rt27 finding 8: the README said shards "may also share one folder"; the folder's lock
    refuses a second run there, another shard's included. The README now says so."""
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC)
    out = tmp_path / "shared"
    with RunStore(out).lock():  # shard 0 working there
        res = runner.invoke(app, ["run", str(spec), "--out", str(out), "--shard", "1/2"])
    assert res.exit_code == 2 and "another stagbench run" in res.output, res.output
    readme = " ".join((Path(__file__).parents[1] / "README.md").read_text().split())
    assert "share one folder" not in readme
    assert "Each shard needs a folder of its own" in readme
