"""
Table-driven flow tests: ``FlowCase`` rows, and ``FlowTestCase`` to run them.
"""

from __future__ import annotations

import dataclasses
import difflib
import unittest
from typing import TYPE_CHECKING, Any, final

import attrs

from ._assertions import (
    assert_call_order,
    assert_called,
    assert_compensated,
    assert_failed_at,
    assert_not_called,
)
from ._harness import FlowHarness, FlowResult
from ._mock import MockService

if TYPE_CHECKING:
    from collections import abc

    from .._core import Flow, Path
    from ..state import StateStore
    from ._assertions import CallSource
    from ._clock import FakeClock
    from ._harness import DurableFlow
    from ._mock import ServiceCall


@final
class _Unset:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<unset>"


UNSET: Any = _Unset()

_WIDTH = 88


def pretty(value: Any, indent: str = "") -> str:
    """
    Render a value like ``repr``, but one field or item per line when it is long.

    attrs classes and dataclasses are opened up too, so a diff of two outputs
    points at the field that differs.
    """
    text = repr(value)
    if len(indent) + len(text) <= _WIDTH:
        return text
    inner = indent + "    "
    if attrs.has(type(value)):
        fields = [(f.name, getattr(value, f.name)) for f in attrs.fields(type(value)) if f.repr]
        return _block(f"{type(value).__name__}(", ")", fields, inner, indent)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        pairs = [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value) if f.repr]
        return _block(f"{type(value).__name__}(", ")", pairs, inner, indent)
    if isinstance(value, dict):
        lines = [f"{inner}{k!r}: {pretty(v, inner)}," for k, v in value.items()]
        return "{\n" + "\n".join(lines) + f"\n{indent}}}"
    if isinstance(value, list | tuple):
        open_, close = ("[", "]") if isinstance(value, list) else ("(", ")")
        lines = [f"{inner}{pretty(v, inner)}," for v in value]
        return open_ + "\n" + "\n".join(lines) + f"\n{indent}{close}"
    return text


def _block(open_: str, close: str, fields: list[tuple[str, Any]], inner: str, indent: str) -> str:
    lines = [f"{inner}{name}={pretty(v, inner)}," for name, v in fields]
    return open_ + "\n" + "\n".join(lines) + f"\n{indent}{close}"


def diff(expected: Any, actual: Any) -> str:
    """
    A line diff of two values as ``pretty`` renders them (``-`` expected, ``+`` actual).
    """
    lines = difflib.unified_diff(
        pretty(expected).splitlines(),
        pretty(actual).splitlines(),
        fromfile="expected",
        tofile="actual",
        lineterm="",
    )
    return "\n".join(lines)


def _chain(error: BaseException) -> list[BaseException]:
    # The error, what caused it, and a failed saga's original failure.
    seen: list[BaseException] = []
    todo: list[BaseException] = [error]
    while todo:
        current = todo.pop(0)
        if any(current is s for s in seen):
            continue
        seen.append(current)
        if current.__cause__ is not None:
            todo.append(current.__cause__)
        original = getattr(current, "original", None)
        if isinstance(original, BaseException):
            todo.append(original)
    return seen


def error_matches(error: BaseException, expected: str | type[BaseException]) -> bool:
    """
    Tell whether ``error`` is what ``expected`` describes.

    A string must appear in ``"<Type>: <message>"`` of the error or of one of
    its causes; a class must be the type of the error or of one of its causes
    (``expected_error=CardDeclined`` matches the ``StepFailed`` it caused).
    """
    chain = _chain(error)
    if isinstance(expected, str):
        return any(expected in f"{type(e).__name__}: {e}" for e in chain)
    return any(isinstance(e, expected) for e in chain)


def _describe(expected: str | type[BaseException]) -> str:
    return f"a {expected.__name__}" if isinstance(expected, type) else f"an error with {expected!r}"


@final
@attrs.frozen
class FlowCase:
    """
    One row of a table-driven flow test: an input, its mocks, and what should come out.

    Give ``expected_output`` or ``expected_error``, or neither (the flow
    must then just succeed).

    Attributes:
        name: The case's name (its subtest's name).
        input: The flow's input.
        expected_output: What the flow must return (compared with ``==``).
        expected_error: A substring of the error (or of one of its causes),
            or an exception class the error or one of its causes must be.
        mocks: The services, by name (``MockService`` instances or any fakes).
        faults: Paths whose node must fail, with the exception to raise.

    .. versionadded:: 0.1.0
    """

    name: str
    input: Any
    expected_output: Any = attrs.field(default=UNSET, kw_only=True)
    expected_error: str | type[BaseException] | None = attrs.field(default=None, kw_only=True)
    mocks: abc.Mapping[str, Any] = attrs.field(factory=dict, kw_only=True)
    faults: abc.Mapping[Path | str, BaseException | type[BaseException]] = attrs.field(
        factory=dict, kw_only=True
    )

    def __attrs_post_init__(self) -> None:
        """
        Refuse a case that expects both an output and an error.
        """
        if self.expected_output is not UNSET and self.expected_error is not None:
            msg = f"FlowCase {self.name!r}: give expected_output or expected_error, not both"
            raise TypeError(msg)

    def problems(self, result: FlowResult) -> list[str]:
        """
        Say how ``result`` differs from what this case expects (nothing if it does not).
        """
        found = [
            f"MockService {mock.name!r} was asked for {method!r}, which was not configured"
            for mock in self.mocks.values()
            if isinstance(mock, MockService)
            for method in dict.fromkeys(mock.unexpected)
        ]
        error = result.error
        if self.expected_error is not None:
            wanted = _describe(self.expected_error)
            if error is None:
                found.append(f"expected {wanted}, but the flow returned {pretty(result.output)}")
            elif not error_matches(error, self.expected_error):
                found.append(f"expected {wanted}, but got {type(error).__name__}: {error}")
        elif error is not None:
            found.append(f"the flow failed: {type(error).__name__}: {error}")
        elif self.expected_output is not UNSET and self.expected_output != result.output:
            found.append(f"the output differs:\n{diff(self.expected_output, result.output)}")
        return found

    def check(self, result: FlowResult) -> None:
        """
        Raise ``AssertionError`` if ``result`` is not what this case expects.
        """
        found = self.problems(result)
        if found:
            raise AssertionError(f"case {self.name!r}: " + "\n".join(found))


class FlowTestCase(unittest.IsolatedAsyncioTestCase):
    """
    A ``unittest`` test case for flows; it runs under unittest and pytest alike.

    ``await self.run_cases(flow, cases)`` runs a table of ``FlowCase`` rows,
    one subtest each. ``run_flow`` and ``durable`` give a ``FlowResult`` or a
    durable flow to check with the ``assert_*`` methods. Every test gets a
    fresh ``harness`` and fake ``clock``.

    .. versionadded:: 0.1.0
    """

    @property
    def harness(self) -> FlowHarness:
        """
        This test's harness (made on first use).
        """
        found: FlowHarness | None = self.__dict__.get("_flow_harness")
        if found is None:
            found = self.__dict__["_flow_harness"] = FlowHarness()
        return found

    @property
    def clock(self) -> FakeClock:
        """
        This test's fake clock: every run of the test reads it.
        """
        return self.harness.clock

    async def run_flow(
        self,
        flow: Flow[Any, Any],
        input: Any,
        *,
        services: abc.Mapping[str, Any] | None = None,
        faults: abc.Mapping[Path | str, BaseException | type[BaseException]] | None = None,
    ) -> FlowResult:
        """
        Run ``flow`` on ``input`` with ``services``; return how it ended (see ``FlowHarness.run``).
        """
        return await self.harness.run(flow, input, services=services, faults=faults)

    def durable(
        self,
        flow: Flow[Any, Any],
        *,
        name: str | None = None,
        store: StateStore | None = None,
    ) -> DurableFlow:
        """
        Make ``flow`` durable on this test's clock (see ``FlowHarness.durable``).
        """
        return self.harness.durable(flow, name=name, store=store)

    async def run_cases(
        self, flow: Flow[Any, Any], cases: abc.Iterable[FlowCase]
    ) -> list[FlowResult]:
        """
        Run each case as a subtest; a case whose result is not as expected fails.

        Returns:
            The results, in the order of the cases.

        Raises:
            ValueError: No cases, or two with one name.
        """
        table = list(cases)
        names = [case.name for case in table]
        if not table:
            msg = "run_cases: no cases given"
            raise ValueError(msg)
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            msg = f"run_cases: cases need distinct names; repeated: {', '.join(twice)}"
            raise ValueError(msg)
        results = []
        for case in table:
            with self.subTest(case=case.name):
                result = await self.run_flow(
                    flow, case.input, services=case.mocks, faults=case.faults
                )
                results.append(result)
                found = case.problems(result)
                if found:
                    self.fail(f"case {case.name!r}: " + "\n".join(found))
        return results

    # -- assertions --------------------------------------------------------------

    def assert_called(
        self,
        mock: MockService,
        method: str,
        *,
        times: int | None = None,
        args: abc.Sequence[Any] | None = None,
        kwargs: abc.Mapping[str, Any] | None = None,
    ) -> None:
        """
        Assert that ``mock.method`` was called (``times`` times; with these arguments).
        """
        assert_called(mock, method, times=times, args=args, kwargs=kwargs)

    def assert_not_called(self, mock: MockService, method: str | None = None) -> None:
        """
        Assert that ``mock.method`` (or anything on ``mock``) was never called.
        """
        assert_not_called(mock, method)

    def assert_call_order(self, source: CallSource, *expected: str | ServiceCall) -> None:
        """
        Assert that these calls happened in this order, across services.
        """
        assert_call_order(source, *expected)

    def assert_compensated(self, result: FlowResult, *paths: Path | str) -> None:
        """
        Assert that exactly these steps were undone, newest first (none, without paths).
        """
        assert_compensated(result, *paths)

    def assert_failed_at(self, result: FlowResult, path: Path | str) -> None:
        """
        Assert that the flow failed because the node at ``path`` failed.
        """
        assert_failed_at(result, path)
