"""``stagbench run --executor ray`` on a real local Ray cluster (2 CPUs) started here.

The cluster is a ``ray start --head --block`` in a session of its own, so the test can
find the shard tasks' worker processes (and only them) and kill one mid-run, and ends
the whole cluster by signalling that one process it started.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from stagbench.cli import app
from stagbench.errors import MissingExtraError
from stagbench.records import read_transcript
from stagbench.runs.store import RunStore

from fake_openai import Behaviour, FakeOpenAI

runner = CliRunner()
RAY = Path(sys.executable).with_name("ray")
LATENCY = re.compile(r'"latency_s":[0-9.e-]+')

SLOW = """
name = "ray-kill"
seed = 11
repetitions = 6
[game]
rounds = 3
[agents]
max_reasks = 0
[factors]
models = ["mock/random"]
topologies = ["complete", "ring"]
adversaries = ["none", "deceiver(count=1)"]
[model_settings.mock]
options = {latency_s = 0.1}
"""

LIMITED = """
name = "ray-limits"
seed = 12
repetitions = 40
[game]
rounds = 2
[agents]
max_reasks = 0
[factors]
models = ["openai-api/loop/m"]
[model_settings."openai-api"]
max_concurrency = 4
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", **extra}
    return env


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        fake.honour_schema = True
        fake.default = Behaviour(
            text='{"message": "stag", "reasoning": "r", "action": "stag"}', delay_s=0.05
        )
        yield fake


@pytest.fixture(scope="module")
def cluster(fake_server: FakeOpenAI) -> Iterator[tuple[str, int]]:
    """A Ray head with 2 CPUs on loopback: (its address, its session id). Its nodes read
    the fake server's address from their environment, as a cluster's nodes would."""
    pytest.importorskip("ray")  # installed by scripts/setup.sh (the `ray` extra)
    temp = tempfile.mkdtemp(prefix="sbray", dir="/tmp")  # Ray's socket paths must be short
    port = _free_port()
    log = open(Path(temp) / "head.log", "wb")  # noqa: SIM115 - closed below
    head = subprocess.Popen(
        [
            str(RAY),
            "start",
            "--head",
            f"--port={port}",
            "--num-cpus=2",
            "--block",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={temp}",
            "--node-ip-address=127.0.0.1",
        ],  # fmt: skip
        env=_env(LOOP_BASE_URL=fake_server.base_url, LOOP_API_KEY="sk-loop"),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while b"Ray runtime started" not in (Path(temp) / "head.log").read_bytes():
            assert head.poll() is None, (Path(temp) / "head.log").read_text()
            assert time.monotonic() < deadline, "the Ray head did not start in 90 s"
            time.sleep(0.2)
        yield address, os.getsid(head.pid)
    finally:
        head.send_signal(signal.SIGTERM)  # the head drains and stops every process it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)  # its session: only processes it started
            head.wait()
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def _shard_workers(session: int) -> list[int]:
    """Worker processes of the test cluster running a shard task now."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            title = (proc / "cmdline").read_bytes().split(b"\0")[0]
            if title.startswith(b"ray::run_shard") and os.getsid(int(proc.name)) == session:
                pids.append(int(proc.name))
        except (OSError, ProcessLookupError):
            continue
    return pids


def _stagbench(*args: str, env: dict[str, str] | None = None) -> list[str]:
    return [sys.executable, "-P", "-m", "stagbench.cli", "run", *args]


def _normal(path: Path) -> str:
    return LATENCY.sub('"latency_s":0', path.read_text())


def _same_transcripts(a: Path, b: Path) -> None:
    names = sorted(p.name for p in (a / "transcripts").glob("*.jsonl"))
    assert names and names == sorted(p.name for p in (b / "transcripts").glob("*.jsonl"))
    for name in names:
        assert _normal(a / "transcripts" / name) == _normal(b / "transcripts" / name), name


def test_ray_run_survives_a_killed_task_and_equals_one_process(
    tmp_path: Path, cluster: tuple[str, int]
) -> None:
    """Shards run as Ray tasks and stream their transcripts to the driver's one results
    folder; a task killed mid-run has its unfinished trials run again in a new task; the
    transcripts are those of a single-process run; running again resumes (nothing to do)."""
    address, session = cluster
    spec = tmp_path / "spec.toml"
    spec.write_text(SLOW)
    out = tmp_path / "ray"
    cmd = _stagbench(str(spec), "--out", str(out), "--executor", "ray", "--address", address,
                     "--workers", "2", "--concurrency", "2")  # fmt: skip
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    killed = None
    deadline = time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline:
        if len(list((out / "transcripts").glob("*.jsonl"))) >= 3 and killed is None:
            workers = _shard_workers(session)
            if workers:
                killed = workers[0]
                os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    output = proc.communicate(timeout=120)[0].decode()
    assert killed is not None, "no shard task was seen running\n" + output
    assert proc.returncode == 0, output
    assert "died" in output and "run again in a new task" in output, output
    assert "24/24 finished" in output
    manifest = RunStore(out).read_manifest()
    assert manifest is not None and manifest.status == "complete"
    assert manifest.finished_trials == 24 and manifest.workers == 2
    single = tmp_path / "single"
    done = subprocess.run(_stagbench(str(spec), "--out", str(single), "--no-progress"),
                          env=_env(), capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    _same_transcripts(out, single)
    again = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "0 trials run on Ray" in again.stdout, again.stdout


def test_ray_run_keeps_the_model_limit_and_budget_across_tasks(
    tmp_path: Path, cluster: tuple[str, int], fake_server: FakeOpenAI
) -> None:
    """Each of K tasks gets 1/K of the model's concurrency (calls in flight at the one
    server never pass the spec's limit, though both tasks run at once) and of the budget
    (the run stops with exit 3 when its tasks have spent their shares)."""
    address, _ = cluster
    spec = tmp_path / "spec.toml"
    spec.write_text(LIMITED)
    out = tmp_path / "ray"
    fake_server.max_in_flight = 0
    # The driver checks the spec as `run` does (a base URL and key for every model), so it
    # has the nodes' environment; the calls themselves go out from the nodes.
    env = _env(LOOP_BASE_URL=fake_server.base_url, LOOP_API_KEY="sk-loop")
    res = subprocess.run(
        _stagbench(str(spec), "--out", str(out), "--executor", "ray", "--address", address,
                   "--workers", "2", "--concurrency", "16"),  # fmt: skip
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    assert 2 < fake_server.max_in_flight <= 4
    assert len(list((out / "transcripts").glob("*.jsonl"))) == 40
    # A budget of about 90 calls (6 trials) worth: each task may spend half of it, then stops.
    priced = LIMITED.replace('name = "ray-limits"', 'name = "ray-budget"\nbudget_usd = 0.01')
    priced += "input_per_mtok = 10.0\noutput_per_mtok = 0.0\n"  # 11 tokens in: $0.00011 a call
    spec.write_text(priced)
    out = tmp_path / "budget"
    res = subprocess.run(
        _stagbench(str(spec), "--out", str(out), "--executor", "ray", "--address", address,
                   "--workers", "2", "--concurrency", "2"),  # fmt: skip
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 3, res.stdout + res.stderr
    assert "cost limit" in res.stdout
    manifest = RunStore(out).read_manifest()
    assert manifest is not None and manifest.status == "incomplete"
    spent = sum(read_transcript(p).end.cost_usd for p in (out / "transcripts").glob("*.jsonl"))
    # a task checks its share before each call, so it may finish the calls in flight
    assert 0 < spent <= 0.01 + 2 * 8 * 0.00011
    assert 0 < manifest.finished_trials < 40


def test_missing_ray_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stagbench.runs.ray_executor import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails, as when not installed
    with pytest.raises(MissingExtraError, match=r"stagbench\[ray\]"):
        import_ray()
    spec = tmp_path / "spec.toml"
    spec.write_text(SLOW)
    res = runner.invoke(app, ["run", str(spec), "--executor", "ray", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "stagbench[ray]" in res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--executor", "slurm"], "--executor must be local or ray"),
        (["--address", "127.0.0.1:1"], "--address goes with --executor ray"),
        (["--executor", "ray", "--shard", "0/2"], "leave out --shard"),
        (["--executor", "ray", "--cache-dir", "c"], "its tasks keep no reply cache"),
    ],
)
def test_executor_options_are_checked(tmp_path: Path, args: list[str], message: str) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(SLOW)
    res = runner.invoke(app, ["run", str(spec), "--out", str(tmp_path / "o"), *args])
    assert res.exit_code == 2 and message in res.output, res.output


def test_shard_task_streams_each_result_without_ray(tmp_path: Path) -> None:
    """The task body itself (called here as a plain generator): one item per trial, as
    the orchestrator finishes it, each the bytes of a valid transcript."""
    from stagbench.runs.ray_executor import run_shard
    from stagbench.runs.spec import parse_spec

    text = SLOW.replace("latency_s = 0.1", "latency_s = 0.0").replace(
        "repetitions = 6", "repetitions = 1"
    )
    ids = [t.trial_id for t in parse_spec(text).trials()]
    every = list(run_shard(text, ids[:3], 2, 2))
    items = [i for i in every if i[0] != "spent"]
    assert sorted(i[1] for i in items) == sorted(ids[:3]) and {i[0] for i in items} == {"done"}
    # after each result, what the task has spent (its model is free): a restart's budget
    kinds = [i[0] for i in every]
    assert all(kinds[j + 1] == "spent" for j, k in enumerate(kinds) if k == "done")
    assert kinds[-1] == "spent"
    assert all(i[2] == (0.0, {}) for i in every if i[0] == "spent")
    for _kind, trial_id, data in items:
        path = tmp_path / f"{trial_id}.jsonl"
        path.write_bytes(data)
        assert read_transcript(path).trial_id == trial_id
    assert json.loads(items[0][2].splitlines()[0])["type"] == "header"


def test_a_shard_whose_loop_closed_before_its_thread_ended_ends_cleanly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The task's run thread closes its event loop, then ends: a task torn down in
    between must not ask the closed loop to stop (``RuntimeError: Event loop is closed``,
    met on Python 3.13 in the test above)."""
    import asyncio
    import time

    from stagbench.runs import ray_executor
    from stagbench.runs.spec import parse_spec

    def closed_then_slow(*args: Any) -> None:
        items, loops = args[5], args[7]
        loop = asyncio.new_event_loop()
        loops.append(loop)
        loop.close()
        items.put(("failed", "t", "stopped"))
        time.sleep(0.5)  # the loop is closed, the thread still alive
        items.put(None)

    monkeypatch.setattr(ray_executor, "_run_shard_loop", closed_then_slow)
    text = SLOW.replace("repetitions = 6", "repetitions = 1")
    ids = [t.trial_id for t in parse_spec(text).trials()]
    task = ray_executor.run_shard(text, ids[:1], 2, 2)
    assert next(task) == ("failed", "t", "stopped")
    task.close()  # torn down while the thread sleeps


def test_ray_run_refuses_a_folder_another_run_holds(tmp_path: Path) -> None:
    """The driver takes the results folder's lock as `run` does: while another run holds
    it, `--executor ray` refuses before starting or reaching any cluster."""
    pytest.importorskip("ray")
    spec = tmp_path / "spec.toml"
    spec.write_text(SLOW)
    out = tmp_path / "o"
    with RunStore(out).lock():
        res = runner.invoke(
            app, ["run", str(spec), "--executor", "ray", "--address", "127.0.0.1:1",
                  "--out", str(out)],
        )  # fmt: skip
    assert res.exit_code == 2 and "another stagbench run" in res.output, res.output
    assert not (out / "manifest.json").exists()


class _FakeRay:
    """Just what the driver uses of ``ray``: each submitted task is the next of
    ``scripts`` (a function of the task's arguments returning its stream of items, which
    may raise as a dead task's does), its arguments kept in ``calls``."""

    def __init__(self, scripts: list[Any]) -> None:
        self.scripts = scripts
        self.calls: list[tuple[Any, ...]] = []

    def remote(self, **_options: Any) -> Any:
        fake = self

        class Task:
            def options(self, **_kw: Any) -> Task:
                return self

            def remote(self, *args: Any) -> Any:
                fake.calls.append(args)
                return fake.scripts[len(fake.calls) - 1](*args)

        return lambda _fn: Task()

    def get(self, ref: Any) -> Any:
        return ref

    def cancel(self, *_args: Any, **_kw: Any) -> None:
        pass


def _drive_with(
    tmp_path: Path, scripts: list[Any], budget: str = "0.05", settings: str = ""
) -> tuple[Any, Any, list[str]]:
    """The driver on a fake Ray, one shard of the SLOW design's first 4 trials."""
    from rich.console import Console

    from stagbench.runs import ray_executor
    from stagbench.runs.spec import parse_spec

    text = (
        SLOW.replace("latency_s = 0.1", "latency_s = 0.0").replace(
            'name = "ray-kill"', f'name = "ray-kill"\nbudget_usd = {budget}'
        )
        + settings
    )
    spec = parse_spec(text)
    pending = spec.trials()[:4]
    ids = [t.trial_id for t in pending]
    # the transcripts a task would send: made by the task body itself, without Ray
    made = {i[1]: i[2] for i in ray_executor.run_shard(text, ids, 1, 4) if i[0] == "done"}
    store = RunStore(tmp_path / "out")
    store.open(spec, text)
    store.record_spend("earlier", 0.01, {"mock/random": 0.01})  # an earlier invocation's
    result = ray_executor.RayRun(total=4, already_done=0)
    fake = _FakeRay([script(made) for script in scripts])
    console = Console(record=True, width=200)
    ray_executor._drive(fake, spec, text, store, pending, 1, 4, 0.0, result, console)
    return fake, result, [console.export_text()]


def _dies_after_one(made: dict[str, bytes]) -> Any:
    """A task's script: one trial back, $0.02 spent on mock/random, then its node lost."""

    def stream(*_args: Any) -> Iterator[Any]:
        first = sorted(made)[0]
        yield ("done", first, made[first])
        yield ("spent", "", (0.02, {"mock/random": 0.02}))
        raise RuntimeError("the node was lost")

    return stream


def test_a_restarted_task_gets_only_what_its_shard_has_left_of_the_budget(tmp_path: Path) -> None:
    """rt26: a Ray task that died was restarted with a whole new share of the budget, so
    two kills spent twice the budget. The driver keeps what each task said it spent (after
    each trial, failed trials' calls included) and gives the next task only the rest."""

    def finishes(made: dict[str, bytes]) -> Any:
        def stream(text: str, ids: list[str], *_rest: Any) -> Iterator[Any]:
            for trial_id in ids:
                yield ("done", trial_id, made[trial_id])
                yield ("spent", "", (0.001, {"mock/random": 0.001}))

        return stream

    fake, result, _ = _drive_with(tmp_path, [_dies_after_one, finishes])
    assert len(fake.calls) == 2 and result.completed == 4 and not result.stopped
    first, second = fake.calls
    assert first[5] == (pytest.approx(0.05), 0.0)  # the whole budget, one shard
    assert second[5] == (pytest.approx(0.03), 0.0)  # less what the dead task spent
    # no model has a max_cost_usd: none is given a limit, what they spent is in the ledger
    assert first[6] == second[6] == ({"mock/random": 0.01}, {})
    assert RunStore(tmp_path / "out").ledger_by_model() == {"mock/random": pytest.approx(0.031)}
    assert len(second[1]) == 3  # only the trials not back yet
    assert result.spent_usd == pytest.approx(0.02 + 0.001)


def test_a_task_dead_with_its_budget_spent_is_not_restarted(tmp_path: Path) -> None:
    def spends_all(made: dict[str, bytes]) -> Any:
        def stream(*_args: Any) -> Iterator[Any]:
            yield ("spent", "", (0.06, {"mock/random": 0.06}))
            raise RuntimeError("the node was lost")

        return stream

    fake, result, out = _drive_with(tmp_path, [spends_all])
    assert len(fake.calls) == 1 and result.completed == 0
    assert "share of the run's cost limit (budget_usd) is spent" in result.stopped
    assert "its tasks spent $0.06 in all" in result.stopped
    assert "with its share of the budget spent ($0.06 of $0.05)" in out[0]


def test_a_restarted_task_gets_only_what_its_shard_has_left_of_a_model_cost_limit(
    tmp_path: Path,
) -> None:
    """A model's max_cost_usd holds across invocations and a dead task's restart as the
    budget does: the first task gets what the run's earlier invocations left of it, the
    next that less what the dead task said it spent on the model."""

    def finishes(made: dict[str, bytes]) -> Any:
        def stream(text: str, ids: list[str], *_rest: Any) -> Iterator[Any]:
            for trial_id in ids:
                yield ("done", trial_id, made[trial_id])

        return stream

    capped = '[model_settings."mock/random"]\nmax_cost_usd = 0.1\n'
    fake, result, _ = _drive_with(tmp_path, [_dies_after_one, finishes], settings=capped)
    assert len(fake.calls) == 2 and result.completed == 4
    first, second = fake.calls
    assert first[6] == ({"mock/random": 0.01}, {"mock/random": pytest.approx(0.09)})
    assert second[6] == ({"mock/random": 0.01}, {"mock/random": pytest.approx(0.07)})
