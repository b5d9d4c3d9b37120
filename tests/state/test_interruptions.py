"""
What stops a durable run without being its failure: a missing service, a cancellation.

Neither is journaled as a failure nor undoes what the run did: the run is handed back as
it was, and a resume (with the service, in another process) goes on where it stopped.
"""

from __future__ import annotations

import asyncio

import pytest

import systemflow as sf
from systemflow.state import RunStatus, Stateful


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
    kinds = [e.kind for e in await store.history("o-1")]
    assert "failed" not in kinds
    assert "compensated" not in kinds

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
