"""
Fault injection (the core's node hook) and simulated crashes (the crashing store).
"""

from __future__ import annotations

import datetime as dt

import pytest

import systemflow as sf
from systemflow._core import NODE_HOOK
from systemflow.state import InMemoryStateStore, RunStatus
from systemflow.testing import (
    CrashingStore,
    CrashPoint,
    FlowHarness,
    MockService,
    SimulatedCrash,
    assert_called,
    assert_compensated,
    assert_failed_at,
)
from systemflow.testing._faults import inject_failures, parse_path

SAGA = sf.Compensatable(
    sf.Call("inventory", "reserve", compensate="release", name="reserve"),
    sf.Call("payments", "charge", compensate="refund", name="charge"),
    sf.Call("shipping", "ship", name="ship"),
)


def make_services() -> dict[str, MockService]:
    inventory = MockService("inventory")
    inventory.on("reserve").returns("r-1")
    inventory.on("release")
    payments = MockService("payments")
    payments.on("charge").returns("p-1")
    payments.on("refund")
    shipping = MockService("shipping")
    shipping.on("ship").returns("l-1")
    return {"inventory": inventory, "payments": payments, "shipping": shipping}


@pytest.fixture(name="harness")
def _harness() -> FlowHarness:
    return FlowHarness()


class TestPaths:
    @pytest.mark.parametrize(
        ("given", "expected"),
        [("saga/0/charge", ("saga", 0, "charge")), ("<root>", ()), ("", ()), (("a", 1), ("a", 1))],
    )
    def test_parse_path(self, given, expected):
        """Paths are given as tuples or rendered; digit segments are indexes."""
        assert expected == parse_path(given)

    def test_crash_point_converts_and_prints(self):
        """A CrashPoint takes a rendered path and says where it crashes."""
        point = CrashPoint("saga/charge", when="before")

        assert ("saga", "charge") == point.path
        assert "before the checkpoint of saga/charge" == str(point)
        assert "after the 'compensated' record of x" == str(CrashPoint("x", kind="compensated"))

    def test_crash_point_refuses_other_moments(self):
        """when is before or after, nothing else."""
        with pytest.raises(ValueError, match="when must be 'before' or 'after'"):
            CrashPoint("x", when="during")  # type: ignore[arg-type]


class TestFailures:
    async def test_node_fails_with_the_given_exception(self, harness):
        """The node at the path fails as if it raised the exception; the cause is kept."""
        services = make_services()
        result = await harness.run(SAGA, "o", services=services, faults={"ship": OSError("503")})

        assert_failed_at(result, "ship")
        assert isinstance(result.error.__cause__, OSError)
        assert "Call 'ship' at ship in run" in str(result.error)
        assert [("ship",)] == list(result.faults_hit)

    async def test_failure_is_compensated(self, harness):
        """An injected failure is compensated like any other."""
        services = make_services()
        result = await harness.run(SAGA, "o", services=services, faults={"ship": OSError})

        assert_compensated(result, "charge", "reserve")
        assert_called(services["payments"], "refund", args=["p-1"])

    async def test_failing_node_does_not_run(self, harness):
        """The node fails instead of running: its service is never called."""
        services = make_services()
        await harness.run(SAGA, "o", services=services, faults={"charge": OSError})

        assert [] == services["payments"].calls_to("charge")

    async def test_class_gets_a_message_naming_the_path(self, harness):
        """An exception class is raised with a message naming the path."""
        result = await harness.run(SAGA, "o", services=make_services(), faults={"ship": KeyError})

        assert "fault injected at ship" in str(result.error.__cause__)

    async def test_non_critical_failure_is_ignored(self, harness):
        """A non-critical node's injected failure is logged and passed over, as a real one."""
        flow = sf.Sequence(sf.Step(str.upper, inline=True, critical=False, name="up"), str.strip)
        result = await harness.run(flow, " x ", faults={"up": OSError})

        assert ("x", None) == (result.output, result.error)

    async def test_a_combinator_can_fail(self, harness):
        """A path may name an inner node: it fails before any child runs."""
        flow = sf.Sequence(sf.Sequence(str.upper, name="inner"), str.strip)
        result = await harness.run(flow, "x", faults={"inner": OSError})

        assert_failed_at(result, "inner")

    async def test_unknown_path_is_refused_with_suggestions(self, harness):
        """A fault at a path the tree lacks is refused, suggesting the closest paths."""
        with pytest.raises(
            ValueError, match="at chrage: the flow has no node there; did you mean charge"
        ):
            await harness.run(SAGA, "o", services=make_services(), faults={"chrage": OSError})

    async def test_hook_is_reset_after_the_run(self, harness):
        """The hook is only set during the run."""
        await harness.run(SAGA, "o", services=make_services(), faults={"ship": OSError})

        assert None is NODE_HOOK.get()

    async def test_hooks_nest(self):
        """An inner injection keeps an outer one working."""
        flow = sf.Sequence(str.upper, str.strip, name="s")
        outer, inner = [], []
        with (
            inject_failures({("missing",): OSError}, outer),
            inject_failures({(1,): OSError}, inner),
            pytest.raises(sf.StepFailed),
        ):
            await sf.execute(sf.Sequence(flow, str.lower), "x")

        assert ([], [(1,)]) == (outer, inner)

    async def test_durable_failure_is_journaled(self, harness):
        """In a durable run the injected failure is recorded, and the run fails there."""
        durable = harness.durable(SAGA)
        result = await durable.run("o", services=make_services(), faults={"ship": OSError})
        kinds = [(e.kind, e.path) for e in await durable.history(result.record.id)]

        assert ("failed", ("ship",)) in kinds
        assert_failed_at(result, "ship")
        assert [("ship",)] == list(result.faults_hit)


class TestCrashes:
    async def test_crash_after_the_checkpoint_leaves_the_run_running(self, harness):
        """After a crash the run is as the dead process left it: running, held."""
        durable = harness.durable(SAGA)
        record = await durable.start("o", services=make_services(), crash_at=CrashPoint("charge"))

        assert (RunStatus.RUNNING, True) == (record.status, record.lease_owner is not None)
        assert [CrashPoint("charge")] == durable.store.crashes

    async def test_resume_after_the_checkpoint_reuses_the_step(self, harness):
        """A crash after charge's checkpoint: the resumed run does not charge again."""
        durable = harness.durable(SAGA)
        services = make_services()
        record = await durable.start("o", services=services, crash_at=CrashPoint("charge"))
        done = await durable.resume(record.id, services=services)

        assert (RunStatus.COMPLETED, "l-1") == (done.status, done.output)
        assert_called(services["payments"], "charge", times=1)

    async def test_resume_before_the_checkpoint_repeats_the_step(self, harness):
        """A crash before charge's checkpoint: the step is done again (at least once)."""
        durable = harness.durable(SAGA)
        services = make_services()
        record = await durable.start(
            "o", services=services, crash_at=CrashPoint("charge", when="before")
        )
        done = await durable.resume(record.id, services=services)

        assert RunStatus.COMPLETED == done.status
        assert_called(services["payments"], "charge", times=2)

    async def test_resume_takes_over_at_once(self, harness):
        """The new claim does not wait for the dead claim's lease to expire."""
        durable = harness.durable(SAGA)
        services = make_services()
        record = await durable.start("o", services=services, crash_at=CrashPoint("reserve"))
        held_until = record.lease_expires_at
        done = await durable.resume(record.id, services=services)

        assert held_until is not None
        assert held_until > dt.datetime.now(dt.UTC)
        assert RunStatus.COMPLETED == done.status

    async def test_a_plain_stateful_cannot_take_over(self, harness):
        """Without the harness the lease still holds: the crash was not faked away in the store."""
        store = InMemoryStateStore()
        durable = harness.durable(SAGA, store=store)
        record = await durable.start("o", services=make_services(), crash_at=CrashPoint("reserve"))
        plain = sf.Stateful(SAGA, store=store, name="flow-under-test")

        with pytest.raises(sf.RunLocked):
            await plain.resume(record.id, services=make_services())

    async def test_the_dead_claim_writes_nothing(self, harness):
        """After the crash, nothing more of the dead run reaches the store."""
        durable = harness.durable(SAGA)
        record = await durable.start("o", services=make_services(), crash_at=CrashPoint("reserve"))
        kinds = [e.kind for e in await durable.history(record.id)]

        assert ["started", "step"] == kinds

    async def test_the_crash_propagates_uncaught(self):
        """SimulatedCrash is a BaseException: no flow catches or compensates it."""
        store = CrashingStore(InMemoryStateStore())
        stateful = sf.Stateful(SAGA, store=store, name="saga")
        store.arm(CrashPoint("charge"))
        services = make_services()

        with pytest.raises(SimulatedCrash) as info:
            await stateful.start("o", services=services, run_id="r")

        assert not issubclass(SimulatedCrash, Exception)
        assert CrashPoint("charge") == info.value.point
        assert [] == services["inventory"].calls_to("release")

    async def test_crash_in_a_parallel_branch(self, harness):
        """A crash in one branch of a Parallel kills the run; resuming completes it."""
        flow = sf.Parallel(
            a=sf.Call("inventory", "reserve", name="a"), b=sf.Call("payments", "charge", name="b")
        )
        durable = harness.durable(flow)
        result = await durable.run("o", services=make_services(), crash_at=CrashPoint("b"))

        assert ({"a": "r-1", "b": "p-1"}, 1) == (result.output, len(result.crashes))

    async def test_crash_while_taking_a_signal(self, harness):
        """A crash right after a signal is consumed: the resumed run has the payload."""
        flow = sf.Sequence(sf.WaitForSignal("go", name="go"), str.upper)
        durable = harness.durable(flow)
        record = await durable.start("x")
        await durable.signal(record.id, "go", "payload")
        crashed = await durable.resume(record.id, crash_at=CrashPoint("go"))
        done = await durable.resume(record.id)

        assert (RunStatus.RUNNING, "PAYLOAD") == (crashed.status, done.output)

    async def test_crash_before_taking_a_signal(self, harness):
        """A crash before a signal is consumed leaves it waiting for the next claim."""
        flow = sf.Sequence(sf.WaitForSignal("go", name="go"), str.upper)
        durable = harness.durable(flow)
        record = await durable.start("x")
        await durable.signal(record.id, "go", "payload")
        await durable.resume(record.id, crash_at=CrashPoint("go", when="before"))
        done = await durable.resume(record.id)

        assert "PAYLOAD" == done.output

    async def test_crash_during_compensation(self, harness):
        """A crash after an undo's record: the resumed run does not undo it again."""
        durable = harness.durable(SAGA)
        services = make_services()
        services["shipping"].on("ship").raises(OSError("503"))
        point = CrashPoint("charge", kind="compensated")
        record = await durable.start("o", services=services, crash_at=point)
        done = await durable.resume(record.id, services=services)

        assert (RunStatus.RUNNING, RunStatus.FAILED) == (record.status, done.status)
        assert_called(services["payments"], "refund", times=1)
        assert_called(services["inventory"], "release", times=1)

    async def test_unreached_point_does_not_crash(self, harness):
        """A crash point on a branch the run does not take never fires."""
        flow = sf.Conditional(lambda x: x > 0, sf.Step(str, name="pos"), sf.Step(repr, name="neg"))
        result = await harness.durable(flow).run(1, crash_at=CrashPoint("neg"))

        assert ("1", ()) == (result.output, result.crashes)

    async def test_unknown_crash_path_is_refused(self, harness):
        """A crash at a path the tree lacks is refused."""
        with pytest.raises(ValueError, match="a crash at nowhere: the flow has no node there"):
            await harness.durable(SAGA).start("o", crash_at=CrashPoint("nowhere"))

    async def test_crash_on_a_sqlite_store(self, harness, sqlite_store):
        """Crash and resume work on a real database, and the run's history shows both claims."""
        durable = harness.durable(SAGA, store=sqlite_store)
        services = make_services()
        result = await durable.run("o", services=services, crash_at=CrashPoint("charge"))
        kinds = [e.kind for e in await durable.history(result.record.id)]

        assert ("l-1", 1) == (result.output, len(result.crashes))
        assert ["started", "step", "step", "resumed", "step", "completed"] == kinds
        assert_called(services["payments"], "charge", times=1)

    async def test_store_passes_the_rest_on(self):
        """The crashing store passes every other call to the store it wraps."""
        inner = InMemoryStateStore()
        store = CrashingStore(inner)
        stateful = sf.Stateful(sf.WaitForSignal("go"), store=store, name="w")
        record = await stateful.start(None, run_id="r")
        await store.signal("r", "go", 1)
        cancelled = await store.cancel("r")
        listed = await store.list_runs(name="w")
        await store.close()

        assert (RunStatus.PAUSED, RunStatus.CANCELLED) == (record.status, cancelled.status)
        assert ["r"] == [r.id for r in listed]
        assert None is store.armed
        assert repr(store) == "CrashingStore(InMemoryStateStore(runs=1))"

    async def test_heartbeat_and_release_of_a_live_claim_pass_on(self):
        """A live claim's heartbeat and release reach the store."""
        from systemflow.state._lease import is_dead, new_owner
        from systemflow.state._model import Claim

        inner = InMemoryStateStore()
        store = CrashingStore(inner)
        await sf.Stateful(sf.WaitForSignal("go"), store=store, name="w").start(None, run_id="r")
        claim = Claim(new_owner(), 30.0)
        await store.claim_run("r", claim=claim, is_dead=is_dead)
        await store.heartbeat("r", claim=claim)
        await store.release("r", claim=claim)

        assert None is (await inner.get("r")).lease_owner
