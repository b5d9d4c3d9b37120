"""
What stops a durable run without being its failure: a missing service, a cancellation.

Neither is journaled as a failure nor undoes what the run did: the run is handed back as
it was, and a resume (with the service, in another process) goes on where it stopped.
"""

from __future__ import annotations

import asyncio
import json

import attrs
import pytest
import structlog

import systemflow as sf
from systemflow.state import RunStatus, Stateful
from systemflow.state._model import Claim


@attrs.frozen
class Approval:
    by: str
    amount: int


class Inventory:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def reserve(self, sku: str) -> str:
        self.log.append(f"reserve {sku}")
        return f"R-{sku}"

    async def release(self, reservation: str) -> None:
        self.log.append(f"release {reservation}")


class Payments:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def charge(self, reservation: str) -> str:
        self.log.append(f"charge {reservation}")
        return f"paid {reservation}"


def saga() -> sf.Compensatable:
    return sf.Compensatable(
        sf.Call("inventory", "reserve", compensate="release", name="reserve"),
        sf.Call("payments", "charge", name="charge"),
        name="order",
    )


def holding(log: list[str], *, seconds: float) -> sf.Compensatable:
    """A saga that reserves (undone by a release), then works for ``seconds``."""

    async def reserve(x: str) -> str:
        log.append("reserve")
        return "R"

    async def release(x: str, out: str) -> None:
        log.append("release")

    async def more(x: str) -> str:
        await asyncio.sleep(seconds)  # still running when a sibling stops
        log.append("more")
        return x

    reserving = sf.Step(reserve, compensate=release, name="reserve")
    return sf.Compensatable(reserving, sf.Step(more, name="more"), name="hold")


async def test_missing_service_hands_the_run_back_untouched(store):
    """A durable run whose Call has no service: raised, not journaled, nothing undone."""
    log: list[str] = []
    durable = Stateful(saga(), store=store, name="order")

    with pytest.raises(sf.ServiceNotFound) as info:
        await durable.start("sku-1", run_id="o-1", services={"inventory": Inventory(log)})

    error = info.value
    assert ("payments", ("charge",), "o-1") == (error.service, error.path, error.run_id)
    assert "no service named 'payments'" in str(error)
    assert isinstance(error, LookupError)
    assert ["reserve sku-1"] == log  # not released
    rec = await store.get("o-1")
    assert (RunStatus.RUNNING, None) == (rec.status, rec.lease_owner)
    history = await store.history("o-1")
    kinds = [e.kind for e in history]
    assert "failed" not in kinds
    assert "compensated" not in kinds
    back = json.loads(history[-1].data)
    assert ("handed_back", "ServiceNotFound") == (kinds[-1], back["error_type"])
    assert "no service named 'payments'" in back["error"]

    services = {"inventory": Inventory(log), "payments": Payments(log)}
    done = await durable.resume("o-1", services=services)

    assert (RunStatus.COMPLETED, "paid R-sku-1") == (done.status, done.output)
    assert ["reserve sku-1", "charge R-sku-1"] == log  # reserve did not run again


async def test_missing_service_outside_a_durable_run_is_a_failure():
    """Without a journal, a missing service fails the step: the saga undoes what it did."""
    log: list[str] = []

    with pytest.raises(sf.ServiceNotFound, match="known: inventory"):
        await sf.execute(saga(), "sku-2", services={"inventory": Inventory(log)})

    assert ["reserve sku-2", "release R-sku-2"] == log


async def test_missing_service_is_not_retried():
    """A retry policy does not try a missing service again."""
    tried: list[int] = []

    def retry_on(exc: BaseException) -> bool:
        tried.append(1)
        return True

    flow = sf.Call("payments", "charge", retry=sf.RetryPolicy(max_attempts=3, retry_on=retry_on))

    with pytest.raises(sf.ServiceNotFound):
        await sf.execute(flow, "x", services={})

    assert [] == tried


async def test_cancelled_durable_saga_undoes_nothing_and_resumes(store):
    """A durable saga cancelled mid-run (a worker's hand-back) keeps its steps' effects."""
    log: list[str] = []
    started = asyncio.Event()

    class SlowPayments(Payments):
        async def charge(self, reservation: str) -> str:
            started.set()
            await asyncio.sleep(60)
            return await super().charge(reservation)

    durable = Stateful(saga(), store=store, name="order")
    slow = {"inventory": Inventory(log), "payments": SlowPayments(log)}
    task = asyncio.create_task(durable.start("sku-3", run_id="o-3", services=slow))
    await started.wait()

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert ["reserve sku-3"] == log  # not released: the run is not over
    last = (await store.history("o-3"))[-1]
    assert ("handed_back", "CancelledError") == (last.kind, json.loads(last.data)["error_type"])
    services = {"inventory": Inventory(log), "payments": Payments(log)}
    done = await durable.resume("o-3", services=services)
    assert (RunStatus.COMPLETED, "paid R-sku-3") == (done.status, done.output)
    assert ["reserve sku-3", "charge R-sku-3"] == log


async def test_missing_service_of_an_undo_hands_the_run_back(store):
    """An undo whose service is missing: the run waits; a resume with it finishes the undos."""
    log: list[str] = []

    async def refuse(reservation: str) -> str:
        msg = "card declined"
        raise ValueError(msg)

    flow = sf.Compensatable(
        sf.Call("inventory", "reserve", compensate="release", name="reserve"),
        sf.WaitForSignal("pay", name="wait"),
        sf.Step(refuse, name="charge"),
    )
    durable = Stateful(flow, store=store, name="undo")
    await durable.start("sku-4", run_id="o-4", services={"inventory": Inventory(log)})
    await store.signal("o-4", "pay", "R-sku-4")

    with pytest.raises(sf.ServiceNotFound, match="'inventory'"):
        await durable.resume("o-4", services={})

    assert ["reserve sku-4"] == log
    kinds = [e.kind for e in await store.history("o-4")]
    assert "compensated" not in kinds
    assert "run_failed" not in kinds
    done = await durable.resume("o-4", services={"inventory": Inventory(log)})
    assert RunStatus.FAILED == done.status
    assert "card declined" in done.error
    assert ["reserve sku-4", "release R-sku-4"] == log


async def test_saga_in_a_branch_cancelled_by_a_failing_sibling_undoes_its_steps(store):
    """Not a hand-back: a branch cancelled because its sibling failed still compensates."""
    log: list[str] = []

    async def charge(x: str) -> str:
        await asyncio.sleep(0.05)
        msg = "declined"
        raise ValueError(msg)

    both = sf.Parallel(holding(log, seconds=5), sf.Step(charge, name="charge"), name="both")
    flow = sf.Compensatable(both, name="order")

    rec = await Stateful(flow, store=store, name="o").start("x")

    assert RunStatus.FAILED == rec.status
    assert ["reserve", "release"] == log
    compensated = [e.path for e in await store.history(rec.id) if e.kind == "compensated"]
    assert [("both", "hold", "reserve")] == compensated


async def test_nested_durable_run_is_resumed_not_started_again(store):
    """A Stateful node in a durable run: the enclosing run's resume resumes the same child."""
    log: list[str] = []

    async def book(x: int) -> int:
        log.append("book")
        return x

    async def pay(x: str) -> str:
        log.append(f"pay {x}")
        return f"paid {x}"

    child = Stateful(
        sf.WaitForSignal("card", name="card") >> sf.Step(pay, name="pay"), store=store, name="pay"
    )
    parent = Stateful(sf.Step(book, name="book") >> child, store=store, name="trip")

    first = await parent.start(7, run_id="t-1")
    assert RunStatus.PAUSED == first.status
    await store.signal("t-1/1", "card", "visa")
    done = await parent.resume("t-1")

    assert (RunStatus.COMPLETED, "paid visa") == (done.status, done.output)
    assert ["book", "pay visa"] == log
    assert ["t-1/1"] == [r.id for r in await store.list_runs(name="pay")]


async def test_nested_durable_run_under_a_plain_saga_is_cancelled_when_a_service_is_missing(
    store,
):
    """Under a caller that is not durable, the child run is cancelled: no one will resume it."""
    log: list[str] = []

    async def book(x: int) -> int:
        log.append("book")
        return x

    async def unbook(x: int, out: int) -> None:
        log.append("unbook")

    inner = Stateful(sf.Call("payments", "charge", name="charge"), store=store, name="pay")
    outer = sf.Compensatable(sf.Step(book, compensate=unbook, name="book"), inner)

    with pytest.raises(sf.ServiceNotFound):
        await sf.execute(outer, 1, services={})

    assert ["book", "unbook"] == log
    [run] = await store.list_runs(name="pay")
    assert RunStatus.CANCELLED == run.status


def test_worker_refuses_flows_calling_services_it_lacks(store):
    """A worker without a service its flows' Calls use is refused when it is made."""
    flow = Stateful(saga(), store=store, name="order")

    with pytest.raises(ValueError, match=r"calls service 'payments' \(at charge\).*inventory"):
        sf.Worker(store, [flow], services={"inventory": Inventory([])})


async def test_missing_service_in_one_branch_undoes_nothing_in_another(store):
    """A branch handed back for a missing service is no failure: a sibling saga keeps its steps."""
    log: list[str] = []
    hold = holding(log, seconds=0.2)
    flow = sf.Parallel(hold, sf.Call("payments", "charge", name="charge"), name="both")
    durable = Stateful(flow, store=store, name="o")

    with pytest.raises(sf.ServiceNotFound):
        await durable.start("x", run_id="p-1")
    assert ["reserve"] == log

    done = await durable.resume("p-1", services={"payments": Payments(log)})
    assert RunStatus.COMPLETED == done.status
    assert "release" not in log


async def test_nested_run_held_elsewhere_leaves_the_enclosing_run_to_its_lease(store):
    """A nested run another claim holds: RunLocked; the enclosing run waits for its lease."""
    child = Stateful(sf.WaitForSignal("card", name="card"), store=store, name="card")
    parent = Stateful(sf.Sequence(child, name="trip"), store=store, name="trip")
    await parent.start(1, run_id="t-2")
    [nested] = await store.list_runs(name="card")
    await store.signal(nested.id, "card", "visa")
    await store.claim_run(nested.id, claim=Claim("elsewhere", 60), is_dead=lambda _: False)

    with pytest.raises(sf.RunLocked):
        await parent.resume("t-2")

    rec = await store.get("t-2")
    assert RunStatus.RUNNING == rec.status
    assert rec.lease_owner is not None  # not due again before its lease expires
    with pytest.raises(sf.RunLocked, match="t-2"):
        await store.claim_run("t-2", claim=Claim("next", 60), is_dead=lambda _: False)


async def test_nested_run_id_taken_by_another_flow_is_refused(store):
    """A user's run id with '/' that is the id a nested run would take: refused, named."""

    async def double(x: int) -> int:
        return 2 * x

    other = Stateful(sf.Step(double, name="d"), store=store, name="other")
    await other.start(1, run_id="a/d")  # the nested run's id: the run's, then its path
    child = Stateful(sf.Step(double, name="d"), store=store, name="child")
    parent = Stateful(sf.Sequence(child), store=store, name="parent")

    rec = await parent.start(5, run_id="a")

    assert RunStatus.FAILED == rec.status
    assert "run a/d, the id of 'child' here, is a run of 'other'" in rec.error


async def test_instrumented_tells_a_hand_back_from_a_failure(store):
    """Instrumented logs a durable run's missing service as handed back, not as failed."""
    durable = Stateful(sf.Instrumented(saga()), store=store, name="order")

    with structlog.testing.capture_logs() as logs, pytest.raises(sf.ServiceNotFound):
        await durable.start("sku-9", services={"inventory": Inventory([])})

    ends = [e for e in logs if e["event"].startswith("systemflow.flow_")]
    kinds = {e["event"] for e in ends}
    assert "systemflow.flow_handed_back" in kinds
    assert "systemflow.flow_failed" not in kinds
    [back] = [e for e in ends if e["event"] == "systemflow.flow_handed_back"]
    assert ("warning", "ServiceNotFound") == (back["log_level"], back["error_type"])


class TestSignalThroughTheFlow:
    """Stateful.signal checks a payload against the wait before delivering it."""

    @staticmethod
    def approval(store):
        async def decide(approval: Approval) -> str:
            return f"{approval.by}: {approval.amount}"

        flow = sf.WaitForSignal("approve", payload_type=Approval, name="wait") >> sf.Step(
            decide, name="decide"
        )
        return Stateful(flow, store=store, name="approval")

    async def test_a_fitting_payload_is_delivered(self, store):
        """A payload that reads back as the wait's type is delivered; the run goes on."""
        durable = self.approval(store)
        await durable.start(None, run_id="a-1")

        await durable.signal("a-1", "approve", {"by": "ann", "amount": 5})
        done = await durable.resume("a-1")

        assert (RunStatus.COMPLETED, "ann: 5") == (done.status, done.output)

    async def test_a_payload_that_does_not_fit_is_refused_and_nothing_delivered(self, store):
        """A mistyped payload is refused at once, naming the wait; the run still waits."""
        durable = self.approval(store)
        await durable.start(None, run_id="a-2")

        fits = (
            r"signal .approve. for run a-2 fits no wait for it: the WaitForSignal at wait.*Approval"
        )
        with pytest.raises(sf.SerializationError, match=fits) as info:
            await durable.signal("a-2", "approve", {"by": "ann"})

        assert ("wait",) == info.value.path
        assert "signalled" not in [e.kind for e in await store.history("a-2")]
        assert RunStatus.PAUSED == (await durable.resume("a-2")).status

    async def test_unknown_signal_or_another_flows_run_is_refused(self, store):
        """A signal the flow never waits for, or a run of another flow: ValueError, named."""
        durable = self.approval(store)
        other = Stateful(sf.WaitForSignal("approve", name="w"), store=store, name="other")
        await durable.start(None, run_id="a-3")
        await other.start(None, run_id="o-9")

        with pytest.raises(
            ValueError, match=r"waits for no signal 'aprove' \(it waits for: approve\)"
        ):
            await durable.signal("a-3", "aprove", {})
        with pytest.raises(ValueError, match="run o-9 is a run of 'other', not of 'approval'"):
            await durable.signal("o-9", "approve", {"by": "x", "amount": 1})

    async def test_a_payload_that_fits_one_of_several_waits_is_delivered(self, store):
        """Two waits for one signal, of two types: a payload that fits either is taken."""

        @attrs.frozen
        class Passport:
            number: str

        flow = sf.WaitForSignal("doc", payload_type=Approval, name="first") >> sf.WaitForSignal(
            "doc", payload_type=Passport, name="second"
        )
        durable = Stateful(flow, store=store, name="docs")
        await durable.start(None, run_id="d-1")

        await durable.signal("d-1", "doc", {"by": "ann", "amount": 1})
        await durable.signal("d-1", "doc", {"number": "X1"})
        done = await durable.resume("d-1")

        assert (RunStatus.COMPLETED, Passport("X1")) == (done.status, done.output)

    async def test_a_nested_runs_signal_is_not_this_runs(self, store):
        """A signal only a nested Stateful waits for belongs to its run: refused here."""
        inner = Stateful(sf.WaitForSignal("card", name="card"), store=store, name="inner")
        outer = Stateful(sf.Sequence(inner, name="trip"), store=store, name="outer")
        await outer.start(None, run_id="n-1")

        with pytest.raises(ValueError, match=r"'outer' waits for no signal 'card'"):
            await outer.signal("n-1", "card", "visa")
