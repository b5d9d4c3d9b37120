"""
FlowHarness: runs on mocks, results, assertions, durable runs with signals and skipped time.
"""

from __future__ import annotations

import datetime as dt

import pytest

import systemflow as sf
from systemflow.state import InMemoryStateStore, RunStatus
from systemflow.testing import (
    CallLog,
    CrashPoint,
    FlowHarness,
    FlowResult,
    MockService,
    ServiceCall,
    assert_call_order,
    assert_called,
    assert_compensated,
    assert_failed_at,
    assert_not_called,
)

SAGA = sf.Sequence(
    sf.Compensatable(
        sf.Call("inventory", "reserve", compensate="release", name="reserve"),
        sf.Call("payments", "charge", compensate="refund", name="charge"),
        sf.Call("shipping", "ship", name="ship"),
        name="saga",
    ),
    sf.Step(str.upper, inline=True, name="finish"),
)


def make_services(*, ship: object = "l-1") -> dict[str, MockService]:
    """Mocks for SAGA sharing one log; ``ship`` is the label, or an exception."""
    log = CallLog()
    inventory = MockService("inventory", log=log)
    inventory.on("reserve").returns("r-1")
    inventory.on("release")
    payments = MockService("payments", log=log)
    payments.on("charge").returns("p-1")
    payments.on("refund")
    shipping = MockService("shipping", log=log)
    if isinstance(ship, BaseException):
        shipping.on("ship").raises(ship)
    else:
        shipping.on("ship").returns(ship)
    return {"inventory": inventory, "payments": payments, "shipping": shipping}


@pytest.fixture(name="harness")
def _harness() -> FlowHarness:
    return FlowHarness()


class TestRun:
    async def test_output(self, harness):
        """A successful run gives the output and no error."""
        result = await harness.run(SAGA, "order-1", services=make_services())

        assert ("L-1", None, True) == (result.output, result.error, result.ok)

    async def test_calls_in_order_across_services(self, harness):
        """The result lists the mocks' calls of this run, in the order they happened."""
        result = await harness.run(SAGA, "order-1", services=make_services())

        assert ["inventory.reserve", "payments.charge", "shipping.ship"] == [
            c.target for c in result.calls
        ]

    async def test_calls_of_earlier_runs_are_left_out(self, harness):
        """A second run's result holds only its own calls, even on the same mocks."""
        services = make_services()
        await harness.run(SAGA, "order-1", services=services)
        result = await harness.run(SAGA, "order-2", services=services)

        assert [("order-2",)] == [c.args for c in result.calls if c.method == "reserve"]

    async def test_failure_is_returned(self, harness):
        """A failure is returned in the result, with the path that failed."""
        result = await harness.run(SAGA, "o", services=make_services(ship=OSError("503")))

        assert (sf.StepFailed, ("saga", "ship"), False) == (
            type(result.error),
            result.failed_path,
            result.ok,
        )

    async def test_unwrap(self, harness):
        """unwrap() returns the output, or raises the error."""
        good = await harness.run(SAGA, "o", services=make_services())
        bad = await harness.run(SAGA, "o", services=make_services(ship=OSError("503")))

        assert "L-1" == good.unwrap()
        with pytest.raises(sf.StepFailed, match="503"):
            bad.unwrap()

    async def test_compensated_newest_first(self, harness):
        """The result lists the undone steps, newest first."""
        result = await harness.run(SAGA, "o", services=make_services(ship=OSError("503")))

        assert (("saga", "charge"), ("saga", "reserve")) == result.compensated

    async def test_logs_are_captured(self, harness, capsys):
        """The run's structlog events are kept in the result, not printed."""
        result = await harness.run(SAGA, "o", services=make_services(ship=OSError("503")))

        assert 2 == sum(e["event"] == "systemflow.compensated" for e in result.logs)
        assert "" == capsys.readouterr().out

    async def test_clock_skips_sleeps(self, harness):
        """A Sleep outside a durable run waits on the harness's clock: no real time."""
        flow = sf.Sequence(sf.Sleep(dt.timedelta(days=3)), str.upper)
        result = await harness.run(flow, "x")

        assert ("X", [259200.0]) == (result.output, harness.clock.sleeps)

    async def test_run_id(self, harness):
        """A chosen run id reaches the steps."""
        flow = sf.Step(lambda ctx, _x: ctx.run_id, inline=True)
        result = await harness.run(flow, None, run_id="run-7")

        assert "run-7" == result.output

    def test_repr(self, harness):
        """The harness's repr shows its clock."""
        assert repr(harness).startswith("FlowHarness(clock=FakeClock(2026-01-01")


class TestFailedSaga:
    async def test_compensation_failure_reports_the_original_path(self, harness):
        """When an undo fails too, failed_path is still the step that failed first."""
        services = make_services(ship=OSError("503"))
        services["payments"].on("refund").raises(RuntimeError("refund refused"))
        result = await harness.run(SAGA, "o", services=services)

        assert (sf.CompensationFailed, ("saga", "ship")) == (
            type(result.error),
            result.failed_path,
        )


class TestAssertions:
    async def test_passing_assertions(self, harness):
        """Each assertion passes quietly when the run did what it says."""
        services = make_services(ship=OSError("503"))
        result = await harness.run(SAGA, "o", services=services)

        assert_called(services["payments"], "charge", times=1, args=["r-1"])
        assert_called(services["payments"], "refund", kwargs={})
        assert_not_called(services["shipping"], "label")
        assert_call_order(result, "payments.refund", "inventory.release")
        assert_call_order(services["payments"], ServiceCall("payments", "refund", ("p-1",)))
        assert_compensated(result, "saga/charge", ("saga", "reserve"))
        assert_failed_at(result, "saga/ship")

    async def test_called_fails_with_the_calls_listed(self, harness):
        """assert_called fails when the count is wrong, listing what the mock received."""
        services = make_services()
        await harness.run(SAGA, "o", services=services)

        with pytest.raises(AssertionError) as info:
            assert_called(services["payments"], "charge", times=2)

        assert str(info.value) == (
            "expected payments.charge to be called 2 times, it was called once; "
            "payments received:\n  1. payments.charge('r-1')"
        )

    async def test_called_with_arguments_fails(self, harness):
        """assert_called with arguments fails when no call had them."""
        services = make_services()
        await harness.run(SAGA, "o", services=services)

        with pytest.raises(AssertionError, match=r"payments.charge\('x'\) to be called at least"):
            assert_called(services["payments"], "charge", args=["x"])
        with pytest.raises(AssertionError, match=r"payments.charge\(\.\.\., key=1\)"):
            assert_called(services["payments"], "charge", kwargs={"key": 1})

    async def test_never_called(self, harness):
        """assert_called says never when there was no call at all."""
        services = make_services()

        with pytest.raises(AssertionError, match=r"called never;.*\n  \(no calls\)"):
            assert_called(services["payments"], "refund")

    async def test_not_called_fails(self, harness):
        """assert_not_called fails when there was a call, showing it."""
        services = make_services(ship=OSError("503"))
        await harness.run(SAGA, "o", services=services)

        with pytest.raises(AssertionError, match=r"no call to payments.refund, got 1:\n  1\."):
            assert_not_called(services["payments"], "refund")
        with pytest.raises(AssertionError, match="no call to payments, got 2"):
            assert_not_called(services["payments"])

    async def test_call_order_fails(self, harness):
        """assert_call_order fails on the wrong order, listing every call."""
        result = await harness.run(SAGA, "o", services=make_services(ship=OSError("503")))

        with pytest.raises(AssertionError) as info:
            assert_call_order(result, "inventory.release", "payments.refund")

        message = str(info.value)
        assert "no payments.refund came after the ones before it" in message
        assert "  5. inventory.release('r-1')" in message

    async def test_call_order_from_a_log_or_list(self):
        """The calls may come from a CallLog or any list of calls."""
        log = CallLog()
        log.record(ServiceCall("a", "x"))
        log.record(ServiceCall("b", "y"))

        assert_call_order(log, "a.x", "b.y")
        with pytest.raises(AssertionError):
            assert_call_order(list(reversed(log.calls)), "a.x", "b.y")

    async def test_compensated_fails(self, harness):
        """assert_compensated fails on the wrong order, naming both orders."""
        result = await harness.run(SAGA, "o", services=make_services(ship=OSError("503")))

        with pytest.raises(AssertionError) as info:
            assert_compensated(result, "saga/reserve", "saga/charge")

        assert str(info.value) == (
            "expected the undos of saga/reserve, saga/charge (in that order), "
            "but the run undid saga/charge, saga/reserve"
        )

    async def test_compensated_nothing(self, harness):
        """assert_compensated with no paths asserts that nothing was undone."""
        result = await harness.run(SAGA, "o", services=make_services(ship=OSError("503")))

        with pytest.raises(AssertionError, match="undos of nothing"):
            assert_compensated(result)

    async def test_failed_at_fails_on_success(self, harness):
        """assert_failed_at fails when the flow succeeded, showing the output."""
        result = await harness.run(SAGA, "o", services=make_services())

        with pytest.raises(AssertionError, match="fail at saga/ship, but it succeeded with 'L-1'"):
            assert_failed_at(result, "saga/ship")

    async def test_failed_at_fails_elsewhere(self, harness):
        """assert_failed_at fails when another node failed, naming it and the error."""
        result = await harness.run(SAGA, "o", services=make_services(ship=OSError("503")))

        with pytest.raises(AssertionError, match="but it failed at saga/ship: StepFailed:"):
            assert_failed_at(result, "saga/charge")

    def test_failed_at_on_a_paused_run(self):
        """A paused durable run has not failed: the message says it is paused."""
        record = sf.state.RunRecord(id="r", name="n", status=RunStatus.PAUSED, input=None)

        with pytest.raises(AssertionError, match="but it is paused"):
            assert_failed_at(FlowResult(record=record), "x")


WAIT = sf.Sequence(
    sf.Call("payments", "charge", name="charge"),
    sf.WaitForSignal("approval", name="approval"),
    sf.Sleep(dt.timedelta(days=3), name="cooling_off"),
    sf.Call("payments", "payout", name="payout"),
)


def payment_mocks() -> dict[str, MockService]:
    payments = MockService("payments")
    payments.on("charge").returns("p-1")
    payments.on("payout").calls(lambda approval: f"paid:{approval}")
    return {"payments": payments}


class TestDurable:
    async def test_signal_then_three_days_skipped(self, harness):
        """A run waits for its signal, then its three-day Sleep resumes at once."""
        durable = harness.durable(WAIT, name="payout")
        services = payment_mocks()
        started = await durable.start(1, services=services)
        await durable.signal(started.id, "approval", "yes")
        sleeping = await durable.resume(started.id, services=services)
        done = await durable.fast_forward(started.id, services=services)

        assert (RunStatus.PAUSED, None) == (started.status, started.wake_at)
        assert (RunStatus.PAUSED, harness.clock.now()) == (sleeping.status, sleeping.wake_at)
        assert (RunStatus.COMPLETED, "paid:yes") == (done.status, done.output)
        assert dt.datetime(2026, 1, 4, tzinfo=dt.UTC) == harness.clock.now()

    async def test_resuming_before_the_deadline_pauses_again(self, harness):
        """Without moving the clock, the Sleep is not over."""
        durable = harness.durable(WAIT)
        services = payment_mocks()
        rec = await durable.start(1, services=services)
        await durable.signal(rec.id, "approval", "yes")
        await durable.resume(rec.id, services=services)
        harness.clock.advance(days=2)
        again = await durable.resume(rec.id, services=services)

        assert (RunStatus.PAUSED, ("cooling_off",)) == (again.status, again.current_path)

    async def test_run_skips_timers(self, harness):
        """run() carries a run past its timers; the charge is made once."""
        flow = sf.Sequence(
            sf.Call("payments", "charge"), sf.Sleep(60), sf.Sleep(dt.timedelta(days=1))
        )
        services = payment_mocks()
        result = await harness.durable(flow).run(1, services=services)

        assert ("p-1", RunStatus.COMPLETED) == (result.output, result.record.status)
        assert_called(services["payments"], "charge", times=1)

    async def test_run_crashes_at_a_point_after_a_timer(self, harness):
        """A crash point after a Sleep fires in the resume that passes the timer."""
        flow = sf.Sequence(sf.Sleep(60, name="nap"), sf.Call("payments", "charge", name="charge"))
        services = payment_mocks()

        result = await harness.durable(flow).run(
            1, services=services, crash_at=CrashPoint("charge", when="before")
        )

        assert [CrashPoint("charge", when="before")] == list(result.crashes)
        assert ("p-1", RunStatus.COMPLETED) == (result.output, result.record.status)

    async def test_run_stops_at_a_signal(self, harness):
        """run() returns a run that waits for a signal, paused."""
        result = await harness.durable(WAIT).run(1, services=payment_mocks())

        assert (RunStatus.PAUSED, None, False) == (
            result.record.status,
            result.output,
            result.ok,
        )

    async def test_run_without_skipping_timers(self, harness):
        """skip_timers=False leaves a run at its first timer."""
        flow = sf.Sequence(sf.Sleep(60), str.upper)
        result = await harness.durable(flow).run("x", skip_timers=False)

        assert RunStatus.PAUSED == result.record.status

    async def test_failed_durable_run(self, harness):
        """A failed durable run's result names the failed path and the undos."""
        durable = harness.durable(SAGA)
        result = await durable.run("o", services=make_services(ship=OSError("503")))

        assert_failed_at(result, "saga/ship")
        assert_compensated(result, "saga/charge", "saga/reserve")
        assert "503" in str(result.error)
        assert [("saga", "charge"), ("saga", "reserve")] == await durable.compensated(
            result.record.id
        )

    async def test_logs_are_captured(self, harness, capsys):
        """A durable run's logs land in the result, not on the console."""
        result = await harness.durable(SAGA).run("o", services=make_services(ship=OSError("x")))

        assert any(e["event"] == "systemflow.compensated" for e in result.logs)
        assert "" == capsys.readouterr().out

    async def test_wraps_an_existing_stateful(self, harness):
        """A Stateful keeps its name and store, and gets the harness's clock."""
        store = InMemoryStateStore()
        stateful = sf.Stateful(sf.Sequence(sf.Sleep(10), str.upper), store=store, name="mine")
        durable = harness.durable(stateful)
        result = await durable.run("x")

        assert ("X", "mine") == (result.output, durable.stateful.name)
        assert [result.record.id] == [r.id for r in await store.list_runs()]

    async def test_repr(self, harness):
        """The durable flow's repr names the flow and the store."""
        durable = harness.durable(sf.Step(str.upper), name="up", store=InMemoryStateStore())

        assert "DurableFlow(Stateful(Step(str.upper), name='up'), store=InMemoryStateStore" in repr(
            durable
        )

    async def test_history(self, harness):
        """history() reads the run's events."""
        durable = harness.durable(sf.Step(str.upper, inline=True, name="up"))
        result = await durable.run("x")

        assert ["started", "step", "completed"] == [
            e.kind for e in await durable.history(result.record.id)
        ]
