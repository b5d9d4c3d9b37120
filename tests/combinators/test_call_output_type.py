"""
Call's output_type: what a durable run reads a journaled call output back as.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import attrs
import pytest

import systemflow as sf
from systemflow.state import InMemoryStateStore, RunStatus
from systemflow.testing import CrashPoint, FlowHarness, MockService


@attrs.frozen
class Payment:
    id: str
    cents: int


class Payments:
    """The real service the mocks are checked against."""

    async def charge(self, cents: int) -> Payment:
        raise NotImplementedError

    async def charge_all(self, cents: int) -> list[Payment]:
        raise NotImplementedError


@sf.step(name="describe")
def describe(value: Any) -> str:
    """Say what the step after the call was given (a type name and the payment ids)."""
    payments = value if isinstance(value, list) else [value]
    ids = [p.id if isinstance(p, Payment) else p["id"] for p in payments]
    return f"{type(value).__name__}: {', '.join(ids)}"


def payments_mock() -> MockService:
    payments = MockService("payments", spec=Payments)
    payments.on("charge").returns(Payment("P-1", 500))
    payments.on("charge_all").returns([Payment("P-1", 250), Payment("P-2", 250)])
    return payments


async def crash_after_the_call(call: sf.Call) -> tuple[str, Any, MockService]:
    """Run call >> describe durably, dying right after the call's checkpoint; resume."""
    durable = FlowHarness().durable(sf.Sequence(call, describe), name="charge")
    payments = payments_mock()
    services = {"payments": payments}
    crashed = await durable.start(500, services=services, crash_at=CrashPoint("charge"))
    assert RunStatus.RUNNING == crashed.status  # the process died: the run is left running
    record = await durable.resume(crashed.id, services=services)
    assert RunStatus.COMPLETED == record.status
    return record.output, crashed, payments


class TestCallOutputTypeOnResume:
    async def test_resumed_run_gets_the_output_type(self):
        """A run crashed after a Call(output_type=Payment) reads a Payment back on resume."""
        call = sf.Call("payments", "charge", output_type=Payment, name="charge")
        output, _, payments = await crash_after_the_call(call)

        assert "Payment: P-1" == output
        assert 1 == len(payments.calls_to("charge"))  # read back, not called again

    async def test_without_output_type_the_output_is_json_data(self):
        """Without output_type, the resumed run gets the journaled output as a dict."""
        output, _, _ = await crash_after_the_call(sf.Call("payments", "charge", name="charge"))

        assert "dict: P-1" == output

    async def test_a_generic_output_type(self):
        """A typing form such as list[Payment] structures each item."""
        call = sf.Call("payments", "charge_all", output_type=list[Payment], name="charge")
        output, _, _ = await crash_after_the_call(call)

        assert "list: P-1, P-2" == output

    async def test_resume_after_a_timer_without_a_crash(self):
        """A run paused after the call (no crash) also reads the call's output back typed."""
        harness = FlowHarness()
        call = sf.Call("payments", "charge", output_type=Payment, name="charge")
        tree = sf.Sequence(call, sf.Sleep(dt.timedelta(hours=1), name="wait"), describe)
        result = await harness.durable(tree).run(500, services={"payments": payments_mock()})

        assert (RunStatus.COMPLETED, "Payment: P-1") == (result.record.status, result.output)

    async def test_a_final_call_types_the_runs_output(self):
        """A Stateful whose last node is a typed Call reads the run's output back as that type."""
        call = sf.Call("payments", "charge", output_type=Payment, name="charge")
        store = InMemoryStateStore()
        flow = sf.Stateful(call, store=store, name="charge")
        record = await flow.start(500, services={"payments": payments_mock()})

        assert Payment == flow.output_type
        assert Payment("P-1", 500) == (await flow.get(record.id)).output


class TestCallOutputTypeOption:
    def test_default_is_any(self):
        """Without output_type a Call's output type is Any, and its repr does not show it."""
        call = sf.Call("payments", "charge")

        assert (Any, "Call('payments', 'charge')") == (call.output_type, repr(call))

    def test_repr_shows_the_type(self):
        """The repr names the output type."""
        call = sf.Call("payments", "charge", output_type=Payment, name="charge")

        assert "Call('payments', 'charge', output_type=Payment, name='charge')" == repr(call)

    def test_is_part_of_equality(self):
        """Two calls that differ only in output_type are different nodes."""
        assert sf.Call("p", "m", output_type=Payment) != sf.Call("p", "m")

    def test_does_not_change_the_fingerprint(self):
        """Adding output_type is not a new flow version: runs started without it resume."""
        store = InMemoryStateStore()
        typed = sf.Stateful(sf.Call("p", "m", output_type=Payment), store=store, name="x")
        plain = sf.Stateful(sf.Call("p", "m"), store=store, name="x")

        assert plain.fingerprint == typed.fingerprint

    @pytest.mark.parametrize("form", [int, Payment | None, list[Payment], dict[str, int]])
    def test_accepts_types_and_typing_forms(self, form):
        """A class or a typing form is accepted as it is."""
        assert form == sf.Call("p", "m", output_type=form).output_type

    @pytest.mark.parametrize("bad", ["Payment", Payment("P-1", 1), None, 3])
    def test_refuses_what_is_not_a_type(self, bad):
        """A string, an instance or None is refused, naming the call."""
        with pytest.raises(sf.FlowDefinitionError, match="Call 'charge': output_type must be"):
            sf.Call("payments", "charge", output_type=bad, name="charge")
