"""The process-level run settings: the FIFO concurrency cap, the event loop, the GC policy."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import pytest

from stagbench.agents.models.deadlines import Deadlines
from stagbench.agents.models.slots import Slots
from stagbench.errors import StagbenchError
from stagbench.runs.runtime import event_loop_name, run_async, run_gc_policy


async def test_slots_cap_and_first_come_first_served() -> None:
    slots = Slots(2)
    order: list[int] = []
    peak = [0]

    async def job(i: int) -> None:
        async with slots:
            order.append(i)
            peak[0] = max(peak[0], slots.in_use)
            await asyncio.sleep(0.001 * (i % 3))

    await asyncio.gather(*(job(i) for i in range(50)))
    assert order == list(range(50))  # granted strictly in arrival order
    assert peak[0] == 2 and slots.in_use == 0 and slots.waiting == 0


async def test_slots_cancelled_waiters_never_leak_a_slot() -> None:
    slots = Slots(1)
    await slots.acquire()
    waiters = [asyncio.create_task(slots.acquire()) for _ in range(3)]
    await asyncio.sleep(0)
    assert slots.waiting == 3
    waiters[0].cancel()  # cancelled while waiting: skipped by release
    await asyncio.sleep(0)
    slots.release()  # handed to waiters[1]
    waiters[1].cancel()  # ...which is cancelled before it runs: it must pass the slot on
    await asyncio.wait_for(asyncio.gather(*waiters, return_exceptions=True), 5)
    assert waiters[2].done() and not waiters[2].cancelled()
    assert slots.in_use == 1
    slots.release()
    assert slots.in_use == 0
    with pytest.raises(RuntimeError, match="more often"):
        slots.release()
    with pytest.raises(ValueError):
        Slots(0)


async def test_slots_hand_over_to_many_waiters() -> None:
    slots = Slots(1)
    await slots.acquire()
    waiters = [asyncio.create_task(slots.acquire()) for _ in range(20_000)]
    await asyncio.sleep(0)
    for _ in range(20_000):  # each release hands over at once, without scanning the queue
        slots.release()
    await asyncio.wait_for(asyncio.gather(*waiters), 10)
    assert slots.in_use == 1 and not slots._waiters


def test_event_loop_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    async def which() -> str:
        return type(asyncio.get_running_loop()).__module__

    monkeypatch.setenv("STAGBENCH_EVENT_LOOP", "asyncio")
    assert event_loop_name() == "asyncio"
    assert run_async(which()).startswith("asyncio")
    pytest.importorskip("uvloop")
    monkeypatch.setenv("STAGBENCH_EVENT_LOOP", "auto")
    assert event_loop_name() == "uvloop"
    assert run_async(which()).startswith("uvloop")
    monkeypatch.setenv("STAGBENCH_EVENT_LOOP", "tokio")
    with pytest.raises(StagbenchError, match="STAGBENCH_EVENT_LOOP"):
        event_loop_name()


def test_gc_policy_is_restored_and_still_collects_cycles() -> None:
    before = gc.get_threshold()

    class Node:
        pass

    with run_gc_policy():
        assert gc.get_threshold()[0] >= 200_000
        assert gc.get_freeze_count() > 0
        a, b = Node(), Node()
        a.other, b.other = b, a  # type: ignore[attr-defined]
        del a, b
        assert gc.collect() >= 2  # cycles made during a run are still collectable
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_a_bad_event_loop_setting_is_a_clear_cli_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from stagbench.cli import app

    spec = tmp_path / "s.toml"
    spec.write_text('name = "s"\n[factors]\nmodels = ["scripted/always-stag"]\n')
    monkeypatch.setenv("STAGBENCH_EVENT_LOOP", "tokio")
    res = CliRunner().invoke(app, ["run", str(spec), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "STAGBENCH_EVENT_LOOP must be" in res.output
    monkeypatch.setenv("STAGBENCH_EVENT_LOOP", "asyncio")
    res = CliRunner().invoke(app, ["run", str(spec), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output


async def _guarded(dl: Deadlines, timeout_s: float, work_s: float) -> str:
    call = dl.start(timeout_s)
    try:
        await asyncio.sleep(work_s)
        return "done"
    except asyncio.CancelledError:
        if dl.expired(call):
            raise TimeoutError from None
        raise
    finally:
        dl.finish(call)


async def test_deadlines_time_out_late_calls_only() -> None:
    dl = Deadlines(tick=0.02)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    results = await asyncio.gather(
        *(_guarded(dl, 0.1, 0.3 if i % 2 else 0.01) for i in range(200)), return_exceptions=True
    )
    took = loop.time() - t0
    assert results[0::2] == ["done"] * 100
    assert all(isinstance(r, TimeoutError) for r in results[1::2])
    assert 0.1 <= took < 0.25  # the late ones stopped within a tick or so of their deadline
    assert dl.in_flight == 0
    await asyncio.sleep(0.05)
    assert dl._sweeper is not None and dl._sweeper.done()  # no sweeper left behind


async def test_deadlines_let_other_cancellations_through() -> None:
    dl = Deadlines(tick=0.01)
    task = asyncio.create_task(_guarded(dl, 5.0, 5.0))
    await asyncio.sleep(0.02)
    task.cancel()  # a failed phase or a stop signal, not the deadline
    with pytest.raises(asyncio.CancelledError):
        await task
    # while the deadline's own cancellation becomes a TimeoutError
    late = asyncio.create_task(_guarded(dl, 0.01, 5.0))
    with pytest.raises(TimeoutError):
        await late
    assert dl.in_flight == 0


def test_deadlines_survive_a_new_event_loop() -> None:
    dl = Deadlines(tick=0.01)
    for _ in range(2):  # the sweeper of the first loop is gone; the second gets its own
        with pytest.raises(TimeoutError):
            asyncio.run(_guarded(dl, 0.02, 1.0))


def test_run_works_outside_the_main_thread(tmp_path: Path) -> None:
    """Signal handlers can only be set in the main thread; elsewhere (a notebook's worker,
    a test runner's thread) ``run`` goes on without them."""
    import threading

    from typer.testing import CliRunner

    from stagbench.cli import app

    spec = tmp_path / "s.toml"
    spec.write_text('name = "s"\n[factors]\nmodels = ["scripted/always-stag"]\n')
    codes: list[int] = []

    def go() -> None:
        res = CliRunner().invoke(app, ["run", str(spec), "--out", str(tmp_path / "o")])
        codes.append(res.exit_code)

    t = threading.Thread(target=go)
    t.start()
    t.join(60)
    assert codes == [0]
