"""
Deferred checkpoints: records are stored before the next effect starts, or with the run's end.

The in-memory and SQLite stores write without yielding to the event loop, so these tests
wrap each store in one whose ``append`` yields (as PostgreSQL's does), to open the windows
where another task could run.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import systemflow as sf
from systemflow.state import RunStatus, Stateful
from systemflow.state._model import Claim, NewEvent


class SlowAppends:
    """A store whose appends take a while (and yield), logging when they start and end."""

    def __init__(self, inner: Any, log: list[str], delay: float = 0.02) -> None:
        self.inner = inner
        self.log = log
        self.delay = delay
        self.started = asyncio.Event()

    async def append(self, run_id: str, events: Any, *, claim: Any) -> list[int]:
        paths = ",".join("/".join(map(str, e.path or ())) for e in events)
        self.log.append(f"append-start {paths}")
        self.started.set()
        await asyncio.sleep(self.delay)
        seqs: list[int] = await self.inner.append(run_id, events, claim=claim)
        self.log.append(f"append-done {paths}")
        return seqs

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def effect(log: list[str], name: str, delay: float = 0.0) -> Any:
    async def run(x: int) -> int:
        log.append(f"effect {name}")
        if delay:
            await asyncio.sleep(delay)
        return x

    run.__name__ = name
    return run


async def test_branch_effects_wait_for_the_record_before_the_parallel(store):
    """No branch of a Parallel acts before the step before the Parallel is stored."""
    log: list[str] = []
    slow = SlowAppends(store, log)
    flow = sf.Step(effect(log, "a"), name="a") >> sf.Parallel(
        sf.Step(effect(log, "b"), name="b"), sf.Step(effect(log, "c"), name="c")
    )

    rec = await Stateful(flow, store=slow, name="p").start(1)

    assert RunStatus.COMPLETED == rec.status
    stored = log.index("append-done a")
    assert all(log.index(f"effect {n}") > stored for n in "bc"), log


async def test_cancelled_during_a_write_hands_the_run_back(store):
    """Cancelled while a record is written: the write completes, the run is handed back."""
    log: list[str] = []
    slow = SlowAppends(store, log, delay=0.05)
    calls: list[str] = []

    async def a(x: int) -> int:
        calls.append("a")
        return x

    async def b(x: int) -> int:
        calls.append("b")
        return x + 1

    flow = sf.Step(a, name="a") >> sf.Step(b, name="b")
    durable = Stateful(flow, store=slow, name="c")
    task = asyncio.create_task(durable.start(1, run_id="c-1"))
    await slow.started.wait()  # a's record is being written (before b starts)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    rec = await store.get("c-1")
    assert (RunStatus.RUNNING, None) == (rec.status, rec.lease_owner)
    resumed = await Stateful(flow, store=store, name="c").resume("c-1")
    assert (RunStatus.COMPLETED, 2) == (resumed.status, resumed.output)
    assert ["a", "b"] == calls  # a's record was kept: a did not run again


async def test_failure_in_a_sibling_while_a_branch_writes_still_compensates(store):
    """A branch cancelled mid-write by a failing sibling: the saga still undoes, no leak."""
    log: list[str] = []
    slow = SlowAppends(store, log)
    undone: list[int] = []

    async def reserve(x: int) -> int:
        return x

    async def release(x: int, out: int) -> None:
        undone.append(out)

    async def unstorable(x: int) -> object:
        await asyncio.sleep(0.005)  # while c's record is being written
        return object()

    flow = sf.Compensatable(
        sf.Step(reserve, compensate=release, name="reserve"),
        sf.Parallel(sf.Step(unstorable, name="bad"), sf.Step(effect(log, "c"), name="c")),
    )

    rec = await Stateful(flow, store=slow, name="s").start(5)

    assert RunStatus.FAILED == rec.status
    assert "bad" in rec.error
    assert [5] == undone
    assert None is (await store.get(rec.id)).lease_owner


async def test_cancel_during_the_last_step_returns_the_cancelled_record(store):
    """A run cancelled while its last step runs: start returns it cancelled, not RunLocked."""
    started = asyncio.Event()
    release = asyncio.Event()

    async def last(x: int) -> int:
        started.set()
        await release.wait()
        return x

    durable = Stateful(sf.Step(last, name="last"), store=store, name="k")
    task = asyncio.create_task(durable.start(1, run_id="k-1"))
    await started.wait()

    await store.cancel("k-1")
    release.set()
    rec = await task

    assert RunStatus.CANCELLED == rec.status


class TestFinishWithEvents:
    async def test_events_before_the_final_one(self, store):
        """finish writes the given events, in order, before its own."""
        claim = Claim("a", 30)
        await store.create_run(run_id="r1", name="f", input_json="1", fingerprint="x", claim=claim)
        events = [NewEvent("step", (f"s{i}",), str(i)) for i in range(3)]

        rec = await store.finish(
            "r1",
            claim=claim,
            status=RunStatus.COMPLETED,
            event=NewEvent("completed", None, "2"),
            output_json="2",
            events=events,
        )

        history = await store.history("r1")
        assert ["started", "step", "step", "step", "completed"] == [e.kind for e in history]
        assert [("s0",), ("s1",), ("s2",)] == [e.path for e in history[1:4]]
        assert [e.seq for e in history] == sorted(e.seq for e in history)
        assert ("s2",) == rec.current_path

    async def test_many_events(self, store):
        """More events than one statement takes are all written, in order."""
        claim = Claim("a", 30)
        await store.create_run(run_id="r1", name="f", input_json="1", fingerprint="x", claim=claim)
        events = [NewEvent("step", (f"s{i}",), str(i)) for i in range(150)]

        await store.finish(
            "r1", claim=claim, status=RunStatus.FAILED, event=NewEvent("run_failed"), events=events
        )

        history = await store.history("r1")
        assert [f"s{i}" for i in range(150)] == [e.path[0] for e in history[1:-1]]

    async def test_not_held_writes_nothing(self, store):
        """A claim that lost the run writes none of the events."""
        await store.create_run(
            run_id="r1", name="f", input_json="1", fingerprint="x", claim=Claim("a", 30)
        )

        with pytest.raises(sf.RunLocked):
            await store.finish(
                "r1",
                claim=Claim("b", 30),
                status=RunStatus.COMPLETED,
                event=NewEvent("completed"),
                events=[NewEvent("step", ("s",), "1")],
            )

        assert ["started"] == [e.kind for e in await store.history("r1")]
