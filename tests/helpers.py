"""Shared test helpers: build trials from small inline specs, recording agents."""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import os
import random
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest

from stagbench.agents.base import AgentView, Decision, Utterance
from stagbench.games import Action
from stagbench.runs.spec import TrialSpec, parse_spec

BASE = """
name = "t"
seed = 7
[game]
rounds = {rounds}
talk_phases = {phases}
[factors]
models = ["scripted/always-stag"]
topologies = ["{topology}"]
disclosures = ["{disclosure}"]
"""


def trial(
    topology: str = "complete", disclosure: str = "explicit", rounds: int = 2, phases: int = 1
) -> TrialSpec:
    text = BASE.format(topology=topology, disclosure=disclosure, rounds=rounds, phases=phases)
    return parse_spec(text).trials()[0]


@dataclass
class Recorder:
    """Says who it is, plays stag, and keeps every view it was shown."""

    seat: int
    views: list[AgentView] = field(default_factory=list)

    async def speak(self, view: AgentView) -> Utterance:
        self.views.append(view)
        return Utterance(text=f"hello from {self.seat} r{view.round} p{view.phase}")

    async def act(self, view: AgentView) -> Decision:
        self.views.append(view)
        return Decision(action=Action.STAG)


@dataclass
class RecorderSeats:
    """A seat builder for ``seat_agents``: every honest seat a ``Recorder``, kept in
    ``store``; no adversary expected."""

    store: dict[int, Recorder]

    def build(self, model: str, seat: int, rng: random.Random) -> Recorder:
        self.store[seat] = Recorder(seat)
        return self.store[seat]

    def build_adversary(self, seat: int, inner: str, rng: random.Random, group: object) -> Recorder:
        raise AssertionError("no adversary expected")


ROOT = Path(__file__).resolve().parent.parent


def load_benchmark(name: str) -> ModuleType:
    """A script of benchmarks/ as a module (it is not part of the installed package)."""
    path = ROOT / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def fifo_watch(path: Path) -> Iterator[list[bool]]:
    """Make a FIFO at ``path`` and watch it while the block runs: the list yielded holds
    True once anything opened it for reading (seen by a non-blocking writer's open, which
    succeeds only then). The watcher then writes nothing and closes, so a reader that
    blocked in ``open`` gets an empty file and goes on: a test fails, it never hangs."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    os.mkfifo(path)
    opened: list[bool] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.02):
            try:
                if not stat.S_ISFIFO(os.lstat(path).st_mode):
                    return
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                    return  # moved away (quarantined) or removed
                continue
            opened.append(True)
            os.close(fd)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield opened
    finally:
        stop.set()
        watcher.join()


def assert_refused_before_writing(spec: Path, out: Path, message: str) -> None:
    """``validate`` and ``run`` both refuse ``spec`` (exit 2) with ``message``, no
    traceback, and nothing is written to ``out``."""
    from typer.testing import CliRunner

    from stagbench.cli import app

    runner = CliRunner()
    for args in (["validate", str(spec)], ["run", str(spec), "--out", str(out)]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2, res.output
        assert message in " ".join(res.output.split()), res.output
        assert "Traceback" not in res.output
    assert not out.exists()
