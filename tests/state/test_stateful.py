"""
Durable runs end to end, on every store (memory, SQLite file, PostgreSQL).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from typing import Any

import attrs
import pytest
import structlog

import systemflow as sf
from systemflow.state import RunStatus, Stateful


@attrs.frozen
class Order:
    id: str
    amount: int


@attrs.frozen
class Receipt:
    order_id: str
    charged: int


class Counter:
    """Counts calls per label, across resumes."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    def hit(self, label: str) -> None:
        self.calls[label] = self.calls.get(label, 0) + 1


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so nothing handles it."""


def kinds(history: list[Any]) -> list[str]:
    return [event.kind for event in history]


class TestStartAndResume:
    async def test_start_completes(self, store):
        """A run without pauses completes in start(); output is typed from the annotations."""

        async def charge(order: Order) -> Receipt:
            return Receipt(order.id, order.amount)

        durable = Stateful(sf.Sequence(sf.Step(charge, name="charge")), store=store, name="order")

        rec = await durable.start(Order("o-1", 30))

        assert RunStatus.COMPLETED == rec.status
        assert Receipt("o-1", 30) == rec.output
        assert Order("o-1", 30) == rec.input
        assert ["started", "step", "completed"] == kinds(await store.history(rec.id))
        assert ("charge",) == rec.current_path

    async def test_get_structures_record(self, store):
        """get() reads input and output back as their annotated types."""

        async def charge(order: Order) -> Receipt:
            return Receipt(order.id, order.amount)

        durable = Stateful(sf.Step(charge), store=store, name="order")
        rec = await durable.start(Order("o-2", 5))

        again = await durable.get(rec.id)

        assert (Order("o-2", 5), Receipt("o-2", 5)) == (again.input, again.output)

    async def test_signal_pauses_then_resumes(self, store):
        """WaitForSignal pauses the run; after store.signal, resume returns the payload."""
        counter = Counter()

        async def before(x: int) -> int:
            counter.hit("before")
            return x + 1

        flow = sf.Sequence(before, sf.WaitForSignal("approval", name="approval"))
        durable = Stateful(flow, store=store, name="approve")

        paused = await durable.start(1)
        await store.signal(paused.id, "approval", {"ok": True, "by": "ann"})
        done = await durable.resume(paused.id)

        assert RunStatus.PAUSED == paused.status
        assert ("approval",) == paused.current_path
        assert RunStatus.COMPLETED == done.status
        assert {"ok": True, "by": "ann"} == done.output
        assert {"before": 1} == counter.calls
        history = kinds(await store.history(paused.id))
        assert ["started", "step", "paused", "signalled", "resumed", "signal", "completed"] == (
            history
        )

    async def test_signal_sent_early_is_kept(self, store):
        """A signal sent before the wait is reached is consumed when it is reached."""
        gate = asyncio.Event()

        async def slow(x: int) -> int:
            await gate.wait()
            return x

        flow = sf.Sequence(sf.Step(slow, name="slow"), sf.WaitForSignal("go"))
        durable = Stateful(flow, store=store, name="early", lease_seconds=5)
        task = asyncio.create_task(durable.start(1, run_id="early-1"))
        while True:
            try:
                await store.get("early-1")
                break
            except sf.RunNotFound:
                await asyncio.sleep(0)
        await store.signal("early-1", "go", 42)
        gate.set()

        rec = await task

        assert (RunStatus.COMPLETED, 42) == (rec.status, rec.output)

    async def test_journaled_steps_do_not_run_again(self, store):
        """On resume, steps whose outputs are journaled return them without running."""
        counter = Counter()

        def step(label: str) -> sf.Step:
            async def run(x: int) -> int:
                counter.hit(label)
                return x * 2

            return sf.Step(run, name=label)

        flow = sf.Sequence(step("a"), step("b"), sf.WaitForSignal("s"), step("c"))
        durable = Stateful(flow, store=store, name="replay")

        rec = await durable.start(1)
        await store.signal(rec.id, "s", 5)
        done = await durable.resume(rec.id)

        assert {"a": 1, "b": 1, "c": 1} == counter.calls
        assert 10 == done.output

    async def test_idempotency_key_stable_across_resume(self, store):
        """ctx.idempotency_key is the same for a node before and after a resume."""
        keys: list[str] = []

        async def record_key(ctx: sf.FlowContext, x: int) -> int:
            keys.append(ctx.idempotency_key)
            if len(keys) == 1:
                raise Crash
            return x

        durable = Stateful(sf.Sequence(sf.Step(record_key, name="k")), store=store, name="key")

        with pytest.raises(Crash):
            await durable.start(1, run_id="key-run")
        await durable.resume("key-run")

        assert ["key-run:k", "key-run:k"] == keys

    async def test_start_is_idempotent_on_id(self, store):
        """start() with an existing id and the same input returns that run."""

        async def inc(x: int) -> int:
            return x + 1

        durable = Stateful(sf.Step(inc), store=store, name="idem")

        first = await durable.start(1, run_id="same")
        second = await durable.start(1, run_id="same")

        assert (first.id, first.output) == (second.id, second.output)
        with pytest.raises(sf.RunExists, match="another input"):
            await durable.start(2, run_id="same")

    async def test_failure_is_in_the_record(self, store):
        """A failing flow gives a FAILED record with the error; start() does not raise."""

        async def fail(x: int) -> int:
            raise ValueError("card declined")

        durable = Stateful(sf.Step(fail, name="pay"), store=store, name="fail")

        rec = await durable.start(1)

        assert RunStatus.FAILED == rec.status
        assert "card declined" in (rec.error or "")
        assert "run_failed" == kinds(await store.history(rec.id))[-1]

    async def test_resume_finished_returns_it(self, store):
        """Resuming a completed run returns its record without running anything."""

        async def inc(x: int) -> int:
            return x + 1

        durable = Stateful(sf.Step(inc), store=store, name="done")
        rec = await durable.start(1)

        again = await durable.resume(rec.id)

        assert (RunStatus.COMPLETED, 2) == (again.status, again.output)

    async def test_unknown_run(self, store):
        """Resuming or signalling an unknown run raises RunNotFound (a LookupError)."""
        durable = Stateful(sf.Step(lambda x: x), store=store, name="none")

        with pytest.raises(sf.RunNotFound):
            await durable.resume("nope")
        with pytest.raises(LookupError):
            await store.signal("nope", "s", 1)

    async def test_signal_finished_run(self, store):
        """Signalling a finished run gives RunFinished naming its status."""
        durable = Stateful(sf.Step(lambda x: x, inline=True), store=store, name="fin")
        rec = await durable.start(1)

        with pytest.raises(sf.RunFinished, match="completed"):
            await store.signal(rec.id, "late", 1)


class TestTimers:
    async def test_sleep_pauses_until_due(self, store, clock):
        """Sleep pauses with wake_at; resuming before it is due pauses again; after, it goes on."""
        flow = sf.Sequence(sf.Sleep(dt.timedelta(days=3), name="cooling_off"), lambda x: x + 1)
        durable = Stateful(flow, store=store, name="sleep", clock=clock)

        rec = await durable.start(1)
        early = await durable.resume(rec.id)
        clock.current += dt.timedelta(days=3)
        done = await durable.resume(rec.id)

        due = dt.datetime(2026, 1, 4, tzinfo=dt.UTC)
        assert (RunStatus.PAUSED, due) == (rec.status, rec.wake_at)
        assert RunStatus.PAUSED == early.status
        assert (RunStatus.COMPLETED, 2) == (done.status, done.output)


class TestBranches:
    async def test_decision_is_journaled(self, store):
        """A Conditional's choice is kept: a resumed run takes the same branch."""
        flags = {"premium": True}

        flow = sf.Sequence(
            sf.Conditional(lambda x: flags["premium"], lambda x: "vip", lambda x: "regular"),
            sf.WaitForSignal("s"),
        )
        durable = Stateful(flow, store=store, name="branch")

        rec = await durable.start(1)
        flags["premium"] = False
        await store.signal(rec.id, "s", None)
        await durable.resume(rec.id)

        steps = [e for e in await store.history(rec.id) if e.kind == "step"]
        assert ['"vip"'] == [e.data for e in steps]


class TestCompensationAcrossRestarts:
    async def test_failure_after_resume_undoes_earlier_steps(self, store):
        """A saga failing after a resume undoes the steps completed before the pause."""
        log: list[str] = []

        async def reserve(x: int) -> int:
            log.append("reserve")
            return x

        async def release(x: int, out: int) -> None:
            log.append("release")

        async def ship(x: Any) -> None:
            raise RuntimeError("carrier down")

        flow = sf.Compensatable(
            sf.Step(reserve, compensate=release, name="reserve"),
            sf.WaitForSignal("paid", name="paid"),
            sf.Step(ship, name="ship"),
        )
        durable = Stateful(flow, store=store, name="saga")

        rec = await durable.start(1)
        await store.signal(rec.id, "paid", 1)
        done = await durable.resume(rec.id)

        assert RunStatus.FAILED == done.status
        assert ["reserve", "release"] == log
        assert "compensated" in kinds(await store.history(rec.id))

    async def test_crash_during_compensation_resumes_remaining_undos(self, store):
        """A crash while undoing resumes the remaining undos; finished ones are not repeated."""
        log: list[str] = []
        crashes = {"b": 1}

        def step(label: str) -> sf.Step:
            async def do(x: int) -> int:
                log.append(f"do {label}")
                return x

            async def undo(x: int, out: int) -> None:
                if crashes.get(label):
                    crashes[label] -= 1
                    raise Crash
                log.append(f"undo {label}")

            return sf.Step(do, compensate=undo, name=label)

        async def fail(x: int) -> int:
            raise RuntimeError("boom")

        flow = sf.Compensatable(step("a"), step("b"), step("c"), sf.Step(fail, name="x"))
        durable = Stateful(flow, store=store, name="crashy")

        with pytest.raises(Crash):
            await durable.start(1, run_id="crashy-1")
        done = await durable.resume("crashy-1")

        assert RunStatus.FAILED == done.status
        assert ["do a", "do b", "do c", "undo c", "undo b", "undo a"] == log


class TestVersions:
    async def test_changed_tree_refused(self, store):
        """Resuming with a changed tree raises FlowVersionMismatch with both fingerprints."""

        async def a(x: int) -> int:
            return x

        async def b(x: int) -> int:
            return x

        old = Stateful(
            sf.Sequence(sf.Step(a, name="a"), sf.WaitForSignal("s")), store=store, name="v"
        )
        new = Stateful(
            sf.Sequence(sf.Step(b, name="a"), sf.WaitForSignal("s")), store=store, name="v"
        )
        rec = await old.start(1)

        with pytest.raises(sf.FlowVersionMismatch) as info:
            await new.resume(rec.id)

        assert (old.fingerprint, new.fingerprint) == (info.value.stored, info.value.current)
        assert "Step a" in str(info.value)
        assert RunStatus.PAUSED == (await store.get(rec.id)).status
        await store.signal(rec.id, "s", 7)
        assert 7 == (await new.resume(rec.id, accept_version_change=True)).output


class TestConcurrency:
    async def test_two_resumers_one_wins(self, store):
        """Of two concurrent resumers of one run, exactly one proceeds; the other gets RunLocked."""
        gate = asyncio.Event()
        entered = asyncio.Event()

        async def hold(x: int) -> int:
            entered.set()
            await gate.wait()
            return x

        flow = sf.Sequence(sf.WaitForSignal("go"), sf.Step(hold, name="hold"))
        durable = Stateful(flow, store=store, name="race")
        rec = await durable.start(1)
        await store.signal(rec.id, "go", 3)

        first = asyncio.create_task(durable.resume(rec.id))
        await entered.wait()
        with pytest.raises(sf.RunLocked):
            await durable.resume(rec.id)
        gate.set()

        assert 3 == (await first).output

    async def test_parallel_branches_share_commits(self, store):
        """The checkpoints of 200 Parallel branches are written in a few commits."""
        appends = 0
        original = store.append

        async def counting(*args: Any, **kwargs: Any) -> list[int]:
            nonlocal appends
            appends += 1
            return await original(*args, **kwargs)

        store.append = counting  # type: ignore[method-assign]

        async def work(x: int) -> int:
            return x

        durable = Stateful(sf.Parallel(*[sf.Step(work) for _ in range(200)]), store=store, name="p")

        rec = await durable.start(1)

        assert [1] * 200 == rec.output
        assert appends <= 5


class TestHeartbeat:
    async def test_long_step_keeps_its_lease(self, store):
        """A step that outlasts the lease keeps the run: the heartbeat renews it."""
        from systemflow.state._lease import is_dead
        from systemflow.state._model import Claim

        release = asyncio.Event()

        async def slow(x: int) -> int:
            await release.wait()
            return x

        durable = Stateful(sf.Step(slow, name="slow"), store=store, name="hb", lease_seconds=0.6)
        task = asyncio.create_task(durable.start(1, run_id="hb-1"))
        async with asyncio.timeout(10):  # a first operation may connect and create the schema
            while True:
                with contextlib.suppress(sf.RunNotFound):
                    first = (await store.get("hb-1")).lease_expires_at
                    break
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.9)  # past the first lease; renewed every 0.2 s

        renewed = (await store.get("hb-1")).lease_expires_at
        with pytest.raises(sf.RunLocked):
            await store.claim_run("hb-1", claim=Claim("other", 30), is_dead=is_dead)
        release.set()
        rec = await task

        assert renewed > first
        assert (RunStatus.COMPLETED, 1) == (rec.status, rec.output)


class TestCancel:
    async def test_cancel_paused_run(self, store):
        """A cancelled run does not run again and takes no signals."""
        durable = Stateful(sf.WaitForSignal("s"), store=store, name="c")
        rec = await durable.start(None)

        cancelled = await durable.cancel(rec.id)

        assert RunStatus.CANCELLED == cancelled.status
        assert RunStatus.CANCELLED == (await durable.resume(rec.id)).status
        with pytest.raises(sf.RunFinished):
            await store.signal(rec.id, "s", 1)


class TestSerialization:
    async def test_unstorable_output_fails_the_run(self, store):
        """A step output that cannot be stored fails the run, naming the path and the type."""

        class Socketish:
            pass

        async def make(x: int) -> Socketish:
            return Socketish()

        durable = Stateful(sf.Sequence(sf.Step(make, name="conn")), store=store, name="ser")

        rec = await durable.start(1)

        assert RunStatus.FAILED == rec.status
        assert "conn" in (rec.error or "")
        assert "Socketish" in (rec.error or "")

    async def test_unstorable_input_raises(self, store):
        """An input that cannot be stored is a problem of the call: start() raises."""
        durable = Stateful(sf.Step(lambda x: x), store=store, name="ser-in")

        with pytest.raises(sf.SerializationError):
            await durable.start(object())


class TestObservability:
    async def test_reused_nodes_are_marked(self, store, spans):
        """On resume, a journaled step's span says reused; it is not re-executed."""

        async def charge(x: int) -> int:
            return x

        flow = sf.Instrumented(
            sf.Sequence(sf.Step(charge, name="charge"), sf.WaitForSignal("s")), recursive=True
        )
        durable = Stateful(flow, store=store, name="obs")
        rec = await durable.start(1)
        spans.clear()
        await store.signal(rec.id, "s", 2)

        with structlog.testing.capture_logs() as logs:
            await durable.resume(rec.id)

        charge_spans = [s for s in spans.get_finished_spans() if s.name == "Step charge"]
        assert [True] == [s.attributes["systemflow.reused"] for s in charge_spans]
        reused = [e for e in logs if e.get("reused")]
        assert all(e["run_id"] == rec.id and e["path"] == "charge" for e in reused)
        assert reused

    async def test_a_skipped_failure_is_reported_on_resume_as_on_the_first_run(self, store):
        """A recorded non-critical failure, reused: completed and ignored, as when it ran."""

        async def flaky(x: int) -> int:
            raise ValueError("nope")

        step = sf.Step(flaky, critical=False, name="flaky")
        flow = sf.Instrumented(sf.Sequence(step, sf.WaitForSignal("s")), recursive=True)
        durable = Stateful(flow, store=store, name="skip")

        def events(logs: list[dict[str, Any]]) -> list[tuple[str, str]]:
            kept = ("systemflow.flow_completed", "systemflow.flow_failed")
            ignored = "systemflow.step_failed_ignored"
            return [
                (e["event"], e["log_level"])
                for e in logs
                if e.get("path") == "flaky" and e["event"] in (*kept, ignored)
            ]

        with structlog.testing.capture_logs() as first:
            rec = await durable.start(1)
        await store.signal(rec.id, "s", 2)
        with structlog.testing.capture_logs() as resumed:
            done = await durable.resume(rec.id)

        assert (RunStatus.COMPLETED, 2) == (done.status, done.output)
        expected = [
            ("systemflow.step_failed_ignored", "warning"),
            ("systemflow.flow_completed", "info"),
        ]
        assert expected == events(first)
        assert sorted(expected) == sorted(events(resumed))

    async def test_nested_stateful_pauses_with_run_id(self, store):
        """Stateful as a node: a pause raises FlowPaused naming the run and what it waits for."""
        inner = Stateful(sf.WaitForSignal("s"), store=store, name="inner")

        with pytest.raises(sf.FlowPaused) as info:
            await sf.execute(sf.Sequence(inner), 1)

        assert RunStatus.PAUSED == (await store.get(info.value.run_id)).status
        assert ("s",) == info.value.signals


class TestParallelPauses:
    async def test_paused_branches_combine(self, store, clock):
        """A Parallel pauses for every signal its branches wait for and the earliest timer."""
        flow = sf.Parallel(
            a=sf.WaitForSignal("a"), b=sf.WaitForSignal("b"), t=sf.Sleep(60), u=sf.Sleep(30)
        )
        durable = Stateful(flow, store=store, name="pp", clock=clock)

        rec = await durable.start(None)

        paused = [e for e in await store.history(rec.id) if e.kind == "paused"]
        assert (RunStatus.PAUSED, clock.current + dt.timedelta(seconds=30)) == (
            rec.status,
            rec.wake_at,
        )
        assert ["a", "b"] == json.loads(paused[0].data)["signals"]
