"""
Deferred checkpoints: records are stored before the next effect starts, or with the run's end.

The in-memory and SQLite stores write without yielding to the event loop, so these tests
wrap each store in one whose ``append`` yields (as PostgreSQL's does), to open the windows
where another task could run.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import pytest

import systemflow as sf
from systemflow.state import RunStatus, Stateful
from systemflow.state._codec import Codec
from systemflow.state._journal import RunJournal
from systemflow.state._model import Claim, NewEvent


class SlowAppends:
    """A store whose appends take a while (and yield), logging when they start and end."""

    writes_inline = False  # they wait on the event loop, unlike the stores they wrap

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

    async def hold(x: int) -> int:
        log.append("effect c")
        return x * 10

    async def unhold(x: int, out: int) -> None:
        log.append("undo c")
        undone.append(out)

    flow = sf.Compensatable(
        sf.Step(reserve, compensate=release, name="reserve"),
        sf.Parallel(sf.Step(unstorable, name="bad"), sf.Step(hold, compensate=unhold, name="c")),
    )

    rec = await Stateful(flow, store=slow, name="s").start(5)

    assert RunStatus.FAILED == rec.status
    assert "bad" in rec.error
    # c was cancelled while its record was written: it is undone all the same (newest
    # first), and only once its record is stored.
    assert [50, 5] == undone
    assert log.index("undo c") > log.index("append-done 1/c"), log
    assert None is (await store.get(rec.id)).lease_owner
    compensated = [e.path for e in await store.history(rec.id) if e.kind == "compensated"]
    assert [(1, "c"), ("reserve",)] == compensated


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


class FailingAppends(SlowAppends):
    """A store whose appends, from the ``fail_from``-th on, raise ``error`` after a while."""

    def __init__(self, inner: Any, log: list[str], error: BaseException, fail_from: int) -> None:
        super().__init__(inner, log)
        self.error = error
        self.fail_from = fail_from
        self.calls = 0

    async def append(self, run_id: str, events: Any, *, claim: Any) -> list[int]:
        self.calls += 1
        if self.calls < self.fail_from:
            return await super().append(run_id, events, claim=claim)
        await asyncio.sleep(self.delay)
        raise self.error


async def test_a_failed_branch_write_stops_the_run_before_the_next_effect(store):
    """A branch's record that could not be stored: no later effect runs, the run is kept."""
    log: list[str] = []
    failing = FailingAppends(store, log, OSError("disk full"), fail_from=1)
    flow = sf.Parallel(
        sf.Step(effect(log, "b"), name="b"), sf.Step(effect(log, "c"), name="c")
    ) >> sf.Step(effect(log, "d"), name="d")

    with pytest.raises(OSError, match="disk full"):
        await Stateful(flow, store=failing, name="f").start(1, run_id="f-1")

    assert "effect d" not in log
    rec = await store.get("f-1")
    assert (RunStatus.RUNNING, None) == (rec.status, rec.lease_owner)


async def test_a_cancelled_write_fails_the_run_not_the_waiter_as_cancelled(store):
    """A write whose own task was cancelled is a failure, not this task's cancellation."""
    log: list[str] = []
    failing = FailingAppends(store, log, asyncio.CancelledError(), fail_from=1)
    flow = sf.Step(effect(log, "a"), name="a") >> sf.Step(effect(log, "b"), name="b")

    with pytest.raises(RuntimeError, match="journal write was cancelled"):
        await Stateful(flow, store=failing, name="w").start(1, run_id="w-1")

    assert ["effect a"] == log
    assert None is (await store.get("w-1")).lease_owner


async def test_each_task_meets_its_own_copy_of_a_write_failure(store):
    """Tasks that find the journal failed raise copies chained to the failure, not one object."""
    claim = Claim("a", 30)
    await store.create_run(run_id="j-1", name="f", input_json="1", fingerprint="x", claim=claim)
    lost = sf.RunLocked("lease lost", path=("s",), run_id="j-1")
    failing = FailingAppends(store, [], lost, fail_from=1)
    journal = RunJournal(failing, "j-1", claim, Codec.shared(), [])
    journal.record("step", ("s",), 1)

    with pytest.raises(sf.RunLocked) as first:
        await journal.settle()
    with pytest.raises(sf.RunLocked) as second:
        await journal.settle()

    assert first.value is lost  # the task whose write it was
    copy = second.value
    assert copy is not lost
    assert lost is copy.__cause__
    assert ("lease lost", ("s",), "j-1") == (str(copy), copy.path, copy.run_id)
    with pytest.raises(sf.RunLocked) as third:
        await journal.drain()
    assert third.value is not copy


class FailingFinish:
    """A store whose first ``finish`` raises ``ConnectionError`` (after writing nothing)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.failed = False

    async def finish(self, run_id: str, **kwargs: Any) -> Any:
        if not self.failed:
            self.failed = True
            msg = "server closed the connection"
            raise ConnectionError(msg)
        return await self.inner.finish(run_id, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_records_of_a_failed_end_are_stored_with_the_hand_back(store):
    """The end did not happen: the last steps' records are stored as the run is handed back."""
    calls: list[str] = []

    def step(name: str) -> Any:
        async def run(x: int) -> int:
            calls.append(name)
            return x + 1

        return sf.Step(run, name=name)

    flow = step("a") >> step("b")

    with pytest.raises(ConnectionError):
        await Stateful(flow, store=FailingFinish(store), name="g").start(1, run_id="g-1")

    kept = [e.path for e in await store.history("g-1") if e.kind == "step"]
    assert [("a",), ("b",)] == kept
    resumed = await Stateful(flow, store=store, name="g").resume("g-1")
    assert (RunStatus.COMPLETED, 3) == (resumed.status, resumed.output)
    assert ["a", "b"] == calls  # neither ran again


@pytest.mark.parametrize("yields", [0, 2], ids=["before-it-ran", "while-it-runs"])
async def test_a_write_task_cancelled_from_outside_fails_the_journal(store, yields):
    """A write that waits on the loop has a task; cancelling that task is a failure, for all."""
    claim = Claim("a", 30)
    await store.create_run(run_id="j-2", name="f", input_json="1", fingerprint="x", claim=claim)
    slow = SlowAppends(store, [], delay=30)
    journal = RunJournal(slow, "j-2", claim, Codec.shared(), [])
    journal.record("step", ("s",), 1)
    flushing = asyncio.create_task(journal.flush())
    await slow.started.wait()  # the append waits, in a task of its own

    writes = [t for t in asyncio.all_tasks() if "RunJournal._write" in repr(t)]
    assert 1 == len(writes)
    for _ in range(yields):
        await asyncio.sleep(0)
    writes[0].cancel()

    with pytest.raises(RuntimeError, match="journal write was cancelled"):
        await flushing
    with pytest.raises(RuntimeError, match="journal write was cancelled"):
        await journal.settle()
    assert ["started"] == [e.kind for e in await store.history("j-2")]


async def test_a_write_that_does_not_suspend_needs_no_task(store, request):
    """Inline (memory, SQLite, local PostgreSQL) a record is stored in settle, with no task."""
    claim = Claim("a", 30)
    await store.create_run(run_id="j-3", name="f", input_json="1", fingerprint="x", claim=claim)
    journal = RunJournal(store, "j-3", claim, Codec.shared(), [])
    journal.record("step", ("s",), 1)
    before = asyncio.all_tasks()

    await journal.settle()

    kinds = [e.kind for e in await store.history("j-3")]
    assert ["started", "step"] == kinds
    assert store.writes_inline == (request.node.callspec.params["store"] != "postgresql-pool")
    if store.writes_inline:  # pooled PostgreSQL waits on the loop: a task is right there
        assert asyncio.all_tasks() == before
        assert journal._writing is None


CURRENT: contextvars.ContextVar[str | None] = contextvars.ContextVar("current", default=None)


class TracingAppends:
    """A store whose append sets and resets a context variable around an await."""

    writes_inline = False

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def append(self, run_id: str, events: Any, *, claim: Any) -> list[int]:
        token = CURRENT.set("append")
        try:
            await asyncio.sleep(0.001)
            seqs: list[int] = await self.inner.append(run_id, events, claim=claim)
            return seqs
        finally:
            CURRENT.reset(token)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class TimedOutAppends(TracingAppends):
    """A store whose append times out (``asyncio.timeout``, as a pool checkout may)."""

    async def append(self, run_id: str, events: Any, *, claim: Any) -> list[int]:
        async with asyncio.timeout(0.01):
            await asyncio.sleep(1)
        return []  # pragma: no cover -- timed out above


async def test_a_store_append_keeps_its_own_context(store):
    """Context variables an append sets stay its own; the steps never see them."""
    seen: list[str | None] = []

    async def step(x: int) -> int:
        seen.append(CURRENT.get())
        return x

    flow = sf.Parallel(sf.Step(step, name="a"), sf.Step(step, name="b")) >> sf.Step(step, name="c")

    rec = await Stateful(flow, store=TracingAppends(store), name="t").start(1)

    assert RunStatus.COMPLETED == rec.status
    assert [None, None, None] == seen


async def test_a_timeout_inside_an_append_is_a_write_failure(store):
    """A timeout inside an append fails the write, not the run's own task (no CancelledError)."""

    async def step(x: int) -> int:
        return x

    flow = sf.Step(step, name="a") >> sf.Step(step, name="b")

    with pytest.raises(TimeoutError):
        await Stateful(flow, store=TimedOutAppends(store), name="t").start(1, run_id="t-1")

    assert None is (await store.get("t-1")).lease_owner


async def test_a_cancelled_branch_record_is_stored_before_an_undo(store):
    """A branch cancelled before storing its record: the undo after it waits for the record."""
    go = asyncio.Event()
    seen: list[list[str]] = []

    async def reserve(x: int) -> str:
        await asyncio.sleep(0)  # let the sibling wait first
        await go.wait()
        return "R"

    async def release(x: int, out: str) -> None:
        seen.append([e.kind for e in await store.history("b-1")])

    async def check(x: int) -> bool:
        await go.wait()
        msg = "boom"
        raise ValueError(msg)

    flow = sf.Compensatable(
        sf.Parallel(
            sf.Step(reserve, compensate=release, name="reserve"),
            sf.Conditional(check, sf.Step(effect([], "t"), name="t"), name="check"),
        )
    )
    asyncio.get_running_loop().call_later(0.05, go.set)

    rec = await Stateful(flow, store=store, name="o").start(1, run_id="b-1")

    assert RunStatus.FAILED == rec.status
    assert 1 == len(seen)
    assert "step" in seen[0]  # reserve's record was stored before its undo ran
