"""
Assertions about what a flow did: calls, their order, compensations, failures.

Each raises ``AssertionError`` with a message that shows what happened, so a
failing test reads without a debugger. ``FlowTestCase`` offers them as methods.
"""

from __future__ import annotations

from collections import abc
from typing import TYPE_CHECKING, Any

from .._core import format_path
from ._faults import parse_path
from ._harness import FlowResult
from ._mock import CallLog, MockService, ServiceCall

if TYPE_CHECKING:
    from .._core import Path

CallSource = FlowResult | CallLog | MockService | abc.Iterable[ServiceCall]


def _listing(calls: abc.Sequence[ServiceCall]) -> str:
    if not calls:
        return "  (no calls)"
    return "\n".join(f"  {i}. {call}" for i, call in enumerate(calls, 1))


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def _calls_of(source: CallSource) -> list[ServiceCall]:
    if isinstance(source, FlowResult):
        return list(source.calls)
    if isinstance(source, CallLog | MockService):
        return source.calls
    return list(source)


def assert_called(
    mock: MockService,
    method: str,
    *,
    times: int | None = None,
    args: abc.Sequence[Any] | None = None,
    kwargs: abc.Mapping[str, Any] | None = None,
) -> None:
    """
    Assert that ``mock.method`` was called (``times`` times, if given).

    With ``args`` and/or ``kwargs``, only the calls with exactly those
    positional and/or keyword arguments count.

    .. versionadded:: 0.1.0
    """
    made = mock.calls_to(method)
    matching = [
        call
        for call in made
        if (args is None or call.args == tuple(args))
        and (kwargs is None or call.kwargs == dict(kwargs))
    ]
    wanted = f"{mock.name}.{method}"
    if args is not None or kwargs is not None:
        wanted = str(ServiceCall(mock.name, method, tuple(args or ()), dict(kwargs or {})))
        if args is None:
            wanted = wanted.replace("(", "(..., ", 1)
    if times is None and matching:
        return
    if times is not None and len(matching) == times:
        return
    expected = "at least once" if times is None else _times(times)
    actual = "never" if not matching else _times(len(matching))
    msg = (
        f"expected {wanted} to be called {expected}, it was called {actual}; "
        f"{mock.name} received:\n{_listing(mock.calls)}"
    )
    raise AssertionError(msg)


def assert_not_called(mock: MockService, method: str | None = None) -> None:
    """
    Assert that ``mock.method`` was never called (or, without ``method``, nothing on ``mock``).

    .. versionadded:: 0.1.0
    """
    made = mock.calls if method is None else mock.calls_to(method)
    if not made:
        return
    what = mock.name if method is None else f"{mock.name}.{method}"
    msg = f"expected no call to {what}, got {len(made)}:\n{_listing(made)}"
    raise AssertionError(msg)


def _matches(call: ServiceCall, expected: str | ServiceCall) -> bool:
    if isinstance(expected, ServiceCall):
        return call == expected
    return call.target == expected


def assert_call_order(source: CallSource, *expected: str | ServiceCall) -> None:
    """
    Assert that calls happened in this order (other calls may come between them).

    Args:
        source: Where the calls are: a ``FlowResult``, a ``CallLog``, a mock,
            or calls.
        expected: ``"service.method"``, or a ``ServiceCall`` to match its
            arguments too.

    .. versionadded:: 0.1.0
    """
    calls = _calls_of(source)
    position = 0
    for want in expected:
        while position < len(calls) and not _matches(calls[position], want):
            position += 1
        if position == len(calls):
            order = ", then ".join(map(str, expected))
            msg = (
                f"expected the calls {order}; no {want} came after the ones before it. "
                f"The calls were:\n{_listing(calls)}"
            )
            raise AssertionError(msg)
        position += 1


def _rendered(paths: abc.Iterable[Path]) -> str:
    return ", ".join(format_path(p) for p in paths) or "nothing"


def assert_compensated(result: FlowResult, *paths: Path | str) -> None:
    """
    Assert that exactly these steps were undone, in this order (newest first).

    With no paths: that nothing was undone.

    .. versionadded:: 0.1.0
    """
    expected = [parse_path(p) for p in paths]
    actual = list(result.compensated)
    if expected == actual:
        return
    msg = (
        f"expected the undos of {_rendered(expected)} (in that order), "
        f"but the run undid {_rendered(actual)}"
    )
    raise AssertionError(msg)


def assert_failed_at(result: FlowResult, path: Path | str) -> None:
    """
    Assert that the flow failed because the node at ``path`` failed.

    .. versionadded:: 0.1.0
    """
    expected = parse_path(path)
    if result.error is None:
        if result.record is not None and not result.ok:
            ended = f"is {result.record.status.value}"
        else:
            ended = f"succeeded with {result.output!r}"
        msg = f"expected the flow to fail at {format_path(expected)}, but it {ended}"
        raise AssertionError(msg)
    if result.failed_path == expected:
        return
    where = format_path(result.failed_path or ())
    msg = (
        f"expected the flow to fail at {format_path(expected)}, but it failed at {where}: "
        f"{type(result.error).__name__}: {result.error}"
    )
    raise AssertionError(msg)
