"""
FlowCase and FlowTestCase: table-driven tests, and that they fail when they should.
"""

from __future__ import annotations

import io
import unittest

import attrs
import pytest

import systemflow as sf
from systemflow.testing import FlowCase, FlowResult, FlowTestCase, MockService
from systemflow.testing._case import diff, error_matches, pretty


class Declined(Exception):
    """The card was declined."""


@attrs.frozen
class Receipt:
    order: str
    payment: str
    lines: tuple[str, ...] = ()


async def checkout(ctx: sf.FlowContext, order: str) -> Receipt:
    payment = await ctx.services["payments"].charge(order)
    return Receipt(order, payment)


FLOW = sf.Compensatable(
    sf.Call("inventory", "reserve", compensate="release", name="reserve"),
    sf.Step(checkout, name="checkout"),
    name="saga",
)


def mocks(charge: object = "p-1") -> dict[str, MockService]:
    inventory = MockService("inventory")
    inventory.on("reserve").calls(lambda order: order)
    inventory.on("release")
    payments = MockService("payments")
    if isinstance(charge, BaseException):
        payments.on("charge").raises(charge)
    else:
        payments.on("charge").returns(charge)
    return {"inventory": inventory, "payments": payments}


def run_test_case(case_class: type[unittest.TestCase]) -> tuple[unittest.TestResult, str]:
    """Run a TestCase's tests with unittest's runner; return the result and the report."""
    stream = io.StringIO()
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(case_class)
    result = unittest.TextTestRunner(stream=stream, verbosity=0).run(suite)
    return result, stream.getvalue()


class TestFlowCase:
    def test_refuses_both_expectations(self):
        """A case cannot expect an output and an error at once."""
        with pytest.raises(TypeError, match="FlowCase 'x': give expected_output or expected_error"):
            FlowCase("x", 1, expected_output=1, expected_error="boom")

    def test_check_passes(self):
        """check() is quiet when the result is as expected."""
        FlowCase("ok", 1, expected_output=2).check(FlowResult(output=2))

    def test_check_fails_with_a_diff(self):
        """A wrong output fails with a line diff pointing at the field that differs."""
        case = FlowCase("happy", "o", expected_output=Receipt("o", "p-1", ("a", "b")))
        actual = Receipt("o", "p-2", ("a", "b"))

        with pytest.raises(AssertionError) as info:
            case.check(FlowResult(output=actual))

        message = str(info.value)
        assert message.startswith("case 'happy': the output differs:\n--- expected\n+++ actual")
        assert "-Receipt(order='o', payment='p-1', lines=('a', 'b'))" in message

    def test_missing_error_fails(self):
        """Expecting an error when the flow succeeded fails, showing the output."""
        case = FlowCase("declined", "o", expected_error="declined")

        with pytest.raises(
            AssertionError, match="expected an error with 'declined', but the flow returned 3"
        ):
            case.check(FlowResult(output=3))

    def test_wrong_error_fails(self):
        """An error of another type fails, naming what came instead."""
        case = FlowCase("declined", "o", expected_error=Declined)
        error = sf.StepFailed("gateway timeout")

        with pytest.raises(
            AssertionError, match="expected a Declined, but got StepFailed: gateway timeout"
        ):
            case.check(FlowResult(error=error))

    def test_unexpected_error_fails(self):
        """A case expecting success fails when the flow failed."""
        with pytest.raises(AssertionError, match="the flow failed: StepFailed: boom"):
            FlowCase("ok", 1).check(FlowResult(error=sf.StepFailed("boom")))

    def test_unexpected_mock_use_fails_even_with_expected_error(self):
        """A flow that used an unconfigured method fails its case, whatever it returned."""
        payments = MockService("payments")
        payments.unexpected.append("refund")
        case = FlowCase("x", 1, expected_error="boom", mocks={"payments": payments})

        with pytest.raises(AssertionError, match="'payments' was asked for 'refund'"):
            case.check(FlowResult(error=sf.StepFailed("boom")))


class TestErrorMatching:
    def test_substring_of_a_cause(self):
        """A substring may match the error's cause, with its type name."""
        error = sf.StepFailed("checkout failed")
        error.__cause__ = Declined("card 4242 declined")

        assert error_matches(error, "Declined: card 4242")
        assert not error_matches(error, "insufficient funds")

    def test_type_of_a_cause(self):
        """A class matches the error or one of its causes."""
        error = sf.StepFailed("checkout failed")
        error.__cause__ = Declined()

        assert error_matches(error, Declined)
        assert error_matches(error, sf.FlowError)
        assert not error_matches(error, KeyError)

    def test_original_of_a_failed_saga(self):
        """A failed saga's original failure is looked at too."""
        original = sf.StepFailed("x")
        original.__cause__ = Declined()
        error = sf.CompensationFailed("saga failed", original=original, errors=[])

        assert error_matches(error, Declined)


class TestPretty:
    def test_short_values_stay_on_one_line(self):
        """A short value prints as its repr."""
        assert "Receipt(order='o', payment='p', lines=())" == pretty(Receipt("o", "p"))

    def test_long_values_open_up(self):
        """A long value prints one field or item per line, nested."""
        value = {"receipts": [Receipt("o" * 30, "p" * 30, ("line",) * 5)] * 2}
        lines = pretty(value).splitlines()

        assert "{" == lines[0]
        assert "    'receipts': [" == lines[1]
        assert "        Receipt(" == lines[2]
        assert lines[3].startswith("            order='ooo")

    def test_dataclasses_open_up(self):
        """Dataclasses open up like attrs classes."""
        import dataclasses

        @dataclasses.dataclass
        class Row:
            text: str

        assert ["Row(", f"    text='{'x' * 90}',", ")"] == pretty(Row("x" * 90)).splitlines()

    def test_diff_marks_expected_and_actual(self):
        """The diff marks expected lines with - and actual ones with +."""
        text = diff([1] * 40, [1] * 39 + [2])

        assert "-    1," in text
        assert "+    2," in text


class TestFlowTestCase:
    def test_passing_cases(self):
        """A table whose cases hold passes under unittest, each case a subtest."""

        class Checkout(FlowTestCase):
            async def test_cases(self) -> None:
                results = await self.run_cases(
                    FLOW,
                    [
                        FlowCase(
                            "happy", "o-1", expected_output=Receipt("o-1", "p-1"), mocks=mocks()
                        ),
                        FlowCase(
                            "declined",
                            "o-2",
                            expected_error="declined",
                            mocks=mocks(Declined("card declined")),
                        ),
                        FlowCase(
                            "by type", "o-3", expected_error=Declined, mocks=mocks(Declined())
                        ),
                    ],
                )
                assert 3 == len(results)

        result, report = run_test_case(Checkout)

        assert (1, [], []) == (result.testsRun, result.failures, result.errors), report

    def test_failing_case_is_reported_with_its_name_and_diff(self):
        """A wrong output fails the test; the report names the case and shows the diff."""

        class Checkout(FlowTestCase):
            async def test_cases(self) -> None:
                await self.run_cases(
                    FLOW,
                    [
                        FlowCase(
                            "happy", "o-1", expected_output=Receipt("o-1", "p-1"), mocks=mocks()
                        ),
                        FlowCase(
                            "wrong", "o-1", expected_output=Receipt("o-1", "p-9"), mocks=mocks()
                        ),
                        FlowCase("no error", "o-1", expected_error=Declined, mocks=mocks()),
                    ],
                )

        result, report = run_test_case(Checkout)

        assert 2 == len(result.failures), report
        assert "(case='wrong')" in report
        assert "case 'wrong': the output differs:" in report
        assert "-Receipt(order='o-1', payment='p-9', lines=())" in report
        assert "+Receipt(order='o-1', payment='p-1', lines=())" in report
        assert "(case='no error')" in report
        assert "expected a Declined, but the flow returned Receipt(" in report
        assert "case='happy'" not in report

    def test_assertion_methods_fail_with_readable_messages(self):
        """The assert_* methods fail the test with the kit's messages."""

        class Checkout(FlowTestCase):
            async def test_compensation(self) -> None:
                services = mocks(Declined("card declined"))
                result = await self.run_flow(FLOW, "o-1", services=services)
                self.assert_failed_at(result, "checkout")
                self.assert_compensated(result, "reserve")
                self.assert_called(services["inventory"], "release", times=1)
                self.assert_not_called(services["payments"], "refund")
                self.assert_call_order(result, "inventory.reserve", "inventory.release")
                self.assert_compensated(result)  # wrong: something was undone

        result, report = run_test_case(Checkout)

        assert 1 == len(result.failures), report
        assert "expected the undos of nothing (in that order), but the run undid reserve" in report

    def test_harness_and_clock_are_per_test(self):
        """Each test gets its own harness, and its clock is the harness's."""
        seen = []

        class Clocks(FlowTestCase):
            async def test_one(self) -> None:
                seen.append((self.harness, self.clock is self.harness.clock, self.harness))

            async def test_two(self) -> None:
                seen.append((self.harness, self.clock is self.harness.clock, self.harness))

        result, report = run_test_case(Clocks)

        assert result.wasSuccessful(), report
        assert [True, True] == [same for _h, same, _again in seen]
        assert seen[0][0] is seen[0][2]
        assert seen[0][0] is not seen[1][0]

    def test_durable_in_a_test_case(self):
        """durable() gives a durable flow on the test's clock: a long Sleep is skipped."""
        import datetime as dt

        class Durable(FlowTestCase):
            async def test_sleep(self) -> None:
                flow = sf.Sequence(sf.Sleep(dt.timedelta(days=3)), str.upper)
                result = await self.durable(flow).run("x")
                assert "X" == result.output

        result, report = run_test_case(Durable)

        assert result.wasSuccessful(), report

    def test_faults_in_a_case(self):
        """A case can make a node fail; the table checks the error."""

        class Faults(FlowTestCase):
            async def test_cases(self) -> None:
                await self.run_cases(
                    FLOW,
                    [
                        FlowCase(
                            "reserve fails",
                            "o",
                            expected_error="out of stock",
                            mocks=mocks(),
                            faults={"reserve": LookupError("out of stock")},
                        )
                    ],
                )

        result, report = run_test_case(Faults)

        assert result.wasSuccessful(), report

    def test_run_cases_refuses_an_empty_table_and_repeated_names(self):
        """An empty table or two cases with one name is an error of the test."""

        class Bad(FlowTestCase):
            async def test_empty(self) -> None:
                await self.run_cases(FLOW, [])

            async def test_twice(self) -> None:
                await self.run_cases(FLOW, [FlowCase("a", 1), FlowCase("a", 2)])

        result, report = run_test_case(Bad)

        assert 2 == len(result.errors), report
        assert "run_cases: no cases given" in report
        assert "cases need distinct names; repeated: a" in report


class TestUnderPytest(FlowTestCase):
    """FlowTestCase runs under pytest too: this class is collected and run by it."""

    async def test_cases(self) -> None:
        """The table runs under pytest's unittest support."""
        await self.run_cases(
            FLOW,
            [
                FlowCase("happy", "o-1", expected_output=Receipt("o-1", "p-1"), mocks=mocks()),
                FlowCase("declined", "o-2", expected_error=Declined, mocks=mocks(Declined())),
            ],
        )
