"""
MockService: answers, recording, the shared log, unexpected calls, spec checks.
"""

from __future__ import annotations

import asyncio
import inspect

import pytest

import systemflow as sf
from systemflow.testing import CallLog, MockService, ServiceCall, UnexpectedCall


class Payments:
    """A real service class, for spec=."""

    async def charge(self, amount: int, *, key: str) -> str:
        return f"P-{amount}"

    async def refund(self, payment: str) -> None:
        return None

    def status(self, payment: str) -> str:
        return "ok"

    @staticmethod
    def currency() -> str:
        return "EUR"


class TestAnswers:
    async def test_returns(self):
        """A method configured with returns() answers every call with the value."""
        payments = MockService("payments")
        payments.on("charge").returns("P-1")

        assert ["P-1", "P-1"] == [await payments.charge(1), await payments.charge(2)]

    async def test_configured_without_answer_returns_none(self):
        """A method configured with no answer returns None."""
        payments = MockService("payments")
        payments.on("refund")

        assert None is await payments.refund("P-1")

    async def test_raises_instance(self):
        """raises() raises the given exception on every call."""
        payments = MockService("payments")
        payments.on("charge").raises(ConnectionError("gateway down"))

        with pytest.raises(ConnectionError, match="gateway down"):
            await payments.charge(1)

    async def test_raises_class(self):
        """raises() accepts an exception class."""
        payments = MockService("payments")
        payments.on("charge").raises(TimeoutError)

        with pytest.raises(TimeoutError):
            await payments.charge(1)

    async def test_then_sequences_answers_and_repeats_the_last(self):
        """Fail twice, then succeed: each answer once, the last one from then on."""
        payments = MockService("payments")
        payments.on("charge").raises(TimeoutError).then(TimeoutError(), "P-1")
        outcomes = []
        for _ in range(4):
            try:
                outcomes.append(await payments.charge(1))
            except TimeoutError:
                outcomes.append("timeout")

        assert ["timeout", "timeout", "P-1", "P-1"] == outcomes

    async def test_then_needs_an_answer(self):
        """then() with nothing to answer is a mistake, named."""
        with pytest.raises(TypeError, match=r"payments\.charge: then\(\) needs"):
            MockService("payments").on("charge").then()

    async def test_then_alone_starts_the_sequence(self):
        """then() on a fresh method gives its answers from the first call."""
        payments = MockService("payments")
        payments.on("charge").then("P-1", "P-2")

        assert ["P-1", "P-2", "P-2"] == [await payments.charge() for _ in range(3)]

    async def test_calls_computes_the_answer(self):
        """calls(fn) answers with fn(*args, **kwargs)."""
        payments = MockService("payments")
        payments.on("charge").calls(lambda amount, key: f"{key}:{amount}")

        assert "k:5" == await payments.charge(5, key="k")

    async def test_calls_awaits_an_async_function(self):
        """calls() awaits what an async function returns."""

        async def charge(amount: int) -> str:
            await asyncio.sleep(0)
            return f"P-{amount}"

        payments = MockService("payments")
        payments.on("charge").calls(charge)

        assert "P-7" == await payments.charge(7)

    async def test_reconfiguring_replaces_answers(self):
        """on() again starts the method's answers afresh."""
        payments = MockService("payments")
        payments.on("charge").returns(1)
        payments.on("charge").returns(2)

        assert 2 == await payments.charge()

    def test_methods_are_coroutine_functions(self):
        """By default a mocked method is a coroutine function (flows await it directly)."""
        payments = MockService("payments")
        payments.on("charge")

        assert inspect.iscoroutinefunction(payments.charge)

    def test_sync_flavour(self):
        """sync=True makes plain methods, for services called synchronously."""
        ledger = MockService("ledger", sync=True)
        ledger.on("post").returns(3)

        assert (3, False) == (ledger.post("x"), inspect.iscoroutinefunction(ledger.post))


class TestRecording:
    async def test_calls_are_recorded_in_order(self):
        """Every call is recorded with its arguments, oldest first."""
        payments = MockService("payments")
        payments.on("charge").returns("P-1")
        payments.on("refund")
        await payments.charge(5, key="k")
        await payments.refund("P-1")

        expected = [
            ServiceCall("payments", "charge", (5,), {"key": "k"}),
            ServiceCall("payments", "refund", ("P-1",)),
        ]
        assert expected == payments.calls

    async def test_failed_calls_are_recorded_too(self):
        """A call answered with an exception still counts as a call."""
        payments = MockService("payments")
        payments.on("charge").raises(TimeoutError)
        with pytest.raises(TimeoutError):
            await payments.charge(1)

        assert [ServiceCall("payments", "charge", (1,))] == payments.calls

    async def test_calls_to_filters_by_method(self):
        """calls_to() lists one method's calls."""
        payments = MockService("payments")
        payments.on("charge")
        payments.on("refund")
        await payments.charge(1)
        await payments.refund("P")
        await payments.charge(2)

        assert [(1,), (2,)] == [c.args for c in payments.calls_to("charge")]

    async def test_shared_log_keeps_the_global_order(self):
        """Mocks sharing a CallLog record one order across services."""
        log = CallLog()
        payments = MockService("payments", log=log)
        inventory = MockService("inventory", log=log)
        payments.on("refund")
        inventory.on("release")
        await payments.refund("P-1")
        await inventory.release("R-1")

        assert ["payments.refund", "inventory.release"] == log.targets

    async def test_log_clear_and_len(self):
        """A log can be cleared; len() counts its calls."""
        log = CallLog()
        payments = MockService("payments", log=log)
        payments.on("charge")
        await payments.charge()
        before = len(log)
        log.clear()

        assert (1, 0, []) == (before, len(log), log.calls)

    async def test_reset_forgets_calls_and_restarts_sequences(self):
        """reset() forgets the calls and starts each answer sequence over."""
        payments = MockService("payments")
        payments.on("charge").returns(1).then(2)
        await payments.charge()
        payments.reset()

        assert ([], 1) == (payments.calls, await payments.charge())

    def test_call_renders_readably(self):
        """A call prints like the call it was; its repr names the fields."""
        call = ServiceCall("payments", "charge", (5,), {"key": "k"})

        assert "payments.charge(5, key='k')" == str(call)
        assert (
            "ServiceCall(service='payments', method='charge', args=(5,), kwargs={'key': 'k'})"
            == (repr(call))
        )

    def test_log_repr(self):
        """A log's repr lists its calls."""
        log = CallLog()
        log.record(ServiceCall("a", "b"))

        assert "CallLog(a.b())" == repr(log)


class TestUnexpected:
    def test_unconfigured_method_names_service_and_method(self):
        """Using a method that was not configured fails, naming the service and method."""
        payments = MockService("payments")
        payments.on("charge")

        with pytest.raises(UnexpectedCall) as info:
            payments.refund("P-1")

        message = str(info.value)
        assert "MockService 'payments'" in message
        assert "'refund'" in message
        assert "configured: charge" in message

    def test_unexpected_is_remembered(self):
        """The mock remembers unexpected uses, so a flow cannot swallow them."""
        payments = MockService("payments")
        with pytest.raises(UnexpectedCall):
            _ = payments.refund

        assert ["refund"] == payments.unexpected

    def test_unexpected_call_is_an_assertion_and_attribute_error(self):
        """hasattr() is false for an unconfigured method; tests treat it as a failure."""
        assert issubclass(UnexpectedCall, AssertionError)
        assert not hasattr(MockService("payments"), "refund")

    def test_private_names_are_plain_attribute_errors(self):
        """Dunder and private lookups are not mistaken for service calls."""
        payments = MockService("payments")

        assert not hasattr(payments, "__aenter__")
        assert [] == payments.unexpected

    def test_own_names_cannot_be_mocked(self):
        """A method named like the mock's own API is refused, naming it."""
        with pytest.raises(ValueError, match="cannot mock 'calls'"):
            MockService("payments").on("calls")

    async def test_flow_call_of_unconfigured_method_fails_the_step(self):
        """A Call leaf of an unconfigured method fails with the service and method named."""
        payments = MockService("payments")
        flow = sf.Call("payments", "charge")

        with pytest.raises(sf.StepFailed, match=r"service 'payments' .* has no method 'charge'"):
            await sf.execute(flow, 1, services={"payments": payments})
        assert ["charge"] == payments.unexpected


class TestSpec:
    def test_unknown_method_is_refused_with_a_suggestion(self):
        """spec= refuses methods the real class lacks, suggesting close names."""
        payments = MockService("payments", spec=Payments)

        with pytest.raises(AttributeError, match=r"Payments has no method 'chrage'.*charge"):
            payments.on("chrage")

    async def test_signature_is_checked(self):
        """A call that the real method would refuse fails, showing the signature."""
        payments = MockService("payments", spec=Payments)
        payments.on("charge").returns("P-1")

        with pytest.raises(
            TypeError, match=r"charge\(amount, \*, key\) cannot be called with \(5\)"
        ):
            await payments.charge(5)
        assert [] == payments.calls

    async def test_matching_call_passes(self):
        """A call the real method accepts is answered and recorded."""
        payments = MockService("payments", spec=Payments())
        payments.on("charge").returns("P-1")

        assert "P-1" == await payments.charge(5, key="k")

    def test_flavour_follows_the_spec(self):
        """With a spec, a sync method of the real class is mocked sync."""
        payments = MockService("payments", spec=Payments)
        payments.on("status").returns("ok")
        payments.on("currency").returns("USD")

        assert ("ok", "USD") == (payments.status("P-1"), payments.currency())
        assert not inspect.iscoroutinefunction(payments.status)

    def test_repr_names_the_spec(self):
        """The mock's repr shows its name and spec."""
        assert "MockService('payments', spec=Payments)" == repr(
            MockService("payments", spec=Payments)
        )

    def test_method_repr(self):
        """A configured method's repr names the service and method."""
        assert "<MockMethod payments.charge>" == repr(MockService("payments").on("charge"))
