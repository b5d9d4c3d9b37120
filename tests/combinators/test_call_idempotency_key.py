"""
Call's idempotency_key: the service method receives ctx.idempotency_key under that keyword.
"""

from __future__ import annotations

import pytest

import systemflow as sf
from systemflow.state import RunStatus
from systemflow.testing import CrashPoint, FlowHarness, MockService


class Payments:
    """The real service the mocks are checked against."""

    async def charge(self, cents: int, *, key: str) -> str:
        raise NotImplementedError

    async def refund(self, payment: str) -> None:
        raise NotImplementedError


def payments_mock() -> MockService:
    payments = MockService("payments", spec=Payments)
    payments.on("charge").returns("P-1")
    payments.on("refund").returns(None)
    return payments


async def test_method_gets_the_key():
    """The method is called with the input and the run's key for this node."""
    payments = payments_mock()
    call = sf.Call("payments", "charge", idempotency_key="key", name="charge")

    out = await sf.execute(sf.Sequence(call), 500, services={"payments": payments})

    [made] = payments.calls
    assert "P-1" == out
    assert (500,) == made.args
    assert ["key"] == list(made.kwargs)
    assert made.kwargs["key"].endswith(":charge")


async def test_same_key_after_a_crash():
    """A call repeated after a crash (before its checkpoint) gets the same key both times."""
    payments = payments_mock()
    flow = sf.Sequence(sf.Call("payments", "charge", idempotency_key="key", name="charge"))
    durable = FlowHarness().durable(flow, name="pay")
    services = {"payments": payments}

    crashed = await durable.start(
        500, services=services, crash_at=CrashPoint("charge", when="before")
    )
    record = await durable.resume(crashed.id, services=services)

    keys = [made.kwargs["key"] for made in payments.calls]
    assert RunStatus.COMPLETED == record.status
    assert 2 == len(keys)
    assert keys[0] == keys[1] == f"{crashed.id}:charge"


async def test_undo_is_called_without_the_key():
    """The undo (a method of the same service) gets only the call's output."""
    payments = payments_mock()

    async def fail(x: str) -> str:
        raise ValueError("no label")

    flow = sf.Compensatable(
        sf.Call("payments", "charge", idempotency_key="key", compensate="refund", name="charge"),
        sf.Step(fail, name="label"),
    )

    with pytest.raises(sf.StepFailed):
        await sf.execute(flow, 500, services={"payments": payments})

    assert [("P-1",), {}] == [payments.calls[-1].args, payments.calls[-1].kwargs]


@pytest.mark.parametrize("bad", ["", "not a name", 3])
def test_refuses_what_is_not_a_keyword(bad):
    """idempotency_key must be a keyword argument's name; the error names the call."""
    with pytest.raises(sf.FlowDefinitionError, match=r"payments\.charge"):
        sf.Call("payments", "charge", idempotency_key=bad)


def test_shown_in_repr():
    """repr shows the option when set."""
    call = sf.Call("payments", "charge", idempotency_key="key")

    assert "idempotency_key='key'" in repr(call)
