"""
Leaves: a step wraps a function, a call names a service method.
"""

from __future__ import annotations

import functools
import typing
from typing import TYPE_CHECKING, Any, TypeVar, final, overload

import attrs

from .._core import (
    FlowDefinitionError,
    ServiceNotFound,
    callable_name,
    check_name,
    format_path,
    input_type,
    make_caller,
    return_type,
    title,
    wants_context,
)
from ._node import Node, node_repr
from ._retry import RetryPolicy, call_with_policy, to_seconds

if TYPE_CHECKING:
    import datetime as dt
    from collections import abc

    from .._core import FlowContext

In = TypeVar("In")
Out = TypeVar("Out")
T = TypeVar("T")
U = TypeVar("U")

_STEP_FORM = "(input) or (ctx, input)"
_UNKNOWN: Any = object()
_UNDO_FORM = "(input, output) or (ctx, input, output)"


def _check_timeout(owner: str, timeout: float | None) -> None:
    if timeout is not None and not timeout > 0:
        msg = f"{owner}: timeout must be greater than 0 seconds, got {timeout!r}"
        raise FlowDefinitionError(msg)


def _check_retry(owner: str, retry: object) -> None:
    if retry is not None and not isinstance(retry, RetryPolicy):
        msg = f"{owner}: retry must be a RetryPolicy, got {type(retry).__name__}"
        raise FlowDefinitionError(msg)


# ``type X = ...`` aliases (3.12+) are types to the codec too.
_TYPE_FORMS: tuple[type, ...] = (type, typing.NewType, getattr(typing, "TypeAliasType", type))


def _check_output_type(owner: str, output_type: object) -> None:
    # A class, Any, or a typing form (list[X], X | None, Literal, NewType, a
    # type alias): what the codec can structure into. A string would be a
    # forward reference nothing resolves; an instance is a slip.
    if (
        isinstance(output_type, _TYPE_FORMS)
        or output_type is Any
        or typing.get_origin(output_type) is not None
    ):
        return
    msg = (
        f"{owner}: output_type must be a type (a class, or a form like list[Item]), "
        f"got {output_type!r}"
    )
    raise FlowDefinitionError(msg)


def _type_name(output_type: Any) -> str:
    # A class by its name; a typing form as typing writes it.
    return output_type.__qualname__ if isinstance(output_type, type) else repr(output_type)


def _undo_caller(
    owner: str, compensate: abc.Callable[..., Any] | None, *, inline: bool
) -> abc.Callable[..., abc.Awaitable[Any]] | None:
    if compensate is None:
        return None
    with_ctx = wants_context(compensate, 2, role=f"{owner}: compensate", form=_UNDO_FORM)
    return make_caller(compensate, with_ctx=with_ctx, inline=inline)


class _Leaf(Node[In, Out]):
    """
    Strictly private: retry, timeout and undo, shared by ``Step`` and ``Call``.
    """

    __slots__ = ()

    is_effect = True
    """A leaf's outcome is journaled in a durable run, and reused on resume."""

    # Filled in by the attrs subclasses.
    retry: RetryPolicy | None
    timeout: float | None
    _call: abc.Callable[..., abc.Awaitable[Any]]
    _undo: abc.Callable[..., abc.Awaitable[Any]] | None

    async def execute(self, ctx: FlowContext, input: In) -> Out:
        """
        Run the leaf's call, under its timeout and retry policy if it has them.
        """
        if self.retry is None and self.timeout is None:
            out: Out = await self._call(ctx, input)
            return out
        return await call_with_policy(  # type: ignore[no-any-return]
            self, ctx, self._call, input, retry=self.retry, timeout=self.timeout
        )

    async def undo(self, ctx: FlowContext, input: In, output: Any) -> None:
        """
        Run the compensation for a completed call, under the same policy.
        """
        if self._undo is None:  # pragma: no cover -- only scheduled when compensate is set
            return
        await call_with_policy(
            self, ctx, self._undo, input, output, retry=self.retry, timeout=self.timeout
        )


@final
@attrs.frozen(init=False, repr=False)
class Step(_Leaf[In, Out]):
    """
    A leaf that runs a function.

    The function takes ``(input)`` or ``(ctx, input)`` and may be sync or
    async. Coroutine functions are awaited; sync functions run in a worker
    thread (they are usually blocking I/O) unless ``inline=True``, which is
    right for cheap, non-blocking functions and saves the thread hop.

    Attributes:
        fn: The function.
        compensate: Its undo, ``(input, output)`` or ``(ctx, input, output)``;
            registered with the nearest ``Compensatable`` when the step completes.
        retry: How failed attempts are retried.
        timeout: Seconds (or a timedelta) one attempt may take; past it the
            attempt fails with ``FlowTimeout``.
        inline: Run a sync function on the event loop instead of in a thread.
        critical: When false, a failure is logged (``systemflow.step_failed_ignored``)
            and the step passes its input through instead of failing the flow.
        name: The step's path segment; its index in its parent if not given.

    .. versionadded:: 0.1.0
    """

    fn: abc.Callable[..., Any]
    compensate: abc.Callable[..., Any] | None = attrs.field(default=None, kw_only=True)
    retry: RetryPolicy | None = attrs.field(default=None, kw_only=True)
    timeout: float | None = attrs.field(default=None, kw_only=True, converter=to_seconds)
    inline: bool = attrs.field(default=False, kw_only=True)
    critical: bool = attrs.field(default=True, kw_only=True)
    name: str | None = attrs.field(default=None, kw_only=True)
    _call: abc.Callable[..., abc.Awaitable[Any]] = attrs.field(init=False, eq=False, repr=False)
    _undo: abc.Callable[..., abc.Awaitable[Any]] | None = attrs.field(
        init=False, eq=False, repr=False
    )
    _output_type: Any = attrs.field(init=False, eq=False, repr=False, default=_UNKNOWN)

    # Overloads so that Step(fn) infers Step[In, Out] from fn's signature.
    @overload
    def __init__(
        self: Step[T, U],
        fn: abc.Callable[[FlowContext, T], abc.Awaitable[U]],
        *,
        compensate: abc.Callable[..., Any] | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | dt.timedelta | None = None,
        inline: bool = False,
        critical: bool = True,
        name: str | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: Step[T, U],
        fn: abc.Callable[[T], abc.Awaitable[U]],
        *,
        compensate: abc.Callable[..., Any] | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | dt.timedelta | None = None,
        inline: bool = False,
        critical: bool = True,
        name: str | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: Step[T, U],
        fn: abc.Callable[[FlowContext, T], U],
        *,
        compensate: abc.Callable[..., Any] | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | dt.timedelta | None = None,
        inline: bool = False,
        critical: bool = True,
        name: str | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: Step[T, U],
        fn: abc.Callable[[T], U],
        *,
        compensate: abc.Callable[..., Any] | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | dt.timedelta | None = None,
        inline: bool = False,
        critical: bool = True,
        name: str | None = None,
    ) -> None: ...
    def __init__(
        self,
        fn: abc.Callable[..., Any],
        *,
        compensate: abc.Callable[..., Any] | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | dt.timedelta | None = None,
        inline: bool = False,
        critical: bool = True,
        name: str | None = None,
    ) -> None:
        self.__attrs_init__(
            fn,
            compensate=compensate,
            retry=retry,
            timeout=timeout,
            inline=inline,
            critical=critical,
            name=name,
        )

    def __attrs_post_init__(self) -> None:
        """
        Validate the options and classify the functions once.
        """
        owner = f"Step {self.name!r}" if self.name else "Step"
        with_ctx = wants_context(self.fn, 1, role=owner, form=_STEP_FORM)
        check_name(self.name, f"Step {self.label!r}")
        owner = f"Step {(self.name or self.label)!r}"
        _check_timeout(owner, self.timeout)
        _check_retry(owner, self.retry)
        object.__setattr__(
            self, "_call", make_caller(self.fn, with_ctx=with_ctx, inline=self.inline)
        )
        object.__setattr__(self, "_undo", _undo_caller(owner, self.compensate, inline=self.inline))

    @property
    def label(self) -> str:
        """
        The function's name, for messages, logs and diagrams.
        """
        return callable_name(self.fn)

    @property
    def input_type(self) -> Any:
        """
        The function's annotated input type (``Any`` if not annotated).
        """
        return input_type(self.fn)

    @property
    def output_type(self) -> Any:
        """
        The function's annotated return type: what a journaled output is read back as.
        """
        # Resolved on first use (annotations may name classes defined after the
        # step), then kept: resolving costs microseconds, per step per resume.
        if self._output_type is _UNKNOWN:
            object.__setattr__(self, "_output_type", return_type(self.fn))
        return self._output_type

    def __repr__(self) -> str:
        return node_repr(
            "Step",
            [self.label],
            compensate=None if self.compensate is None else _Raw(callable_name(self.compensate)),
            retry=self.retry,
            timeout=self.timeout,
            inline=self.inline or None,
            critical=None if self.critical else False,
            name=self.name,
        )


@final
class _Raw:
    """
    Strictly private: shows a string without quotes in a repr.
    """

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


@overload
def step(fn: abc.Callable[[FlowContext, T], abc.Awaitable[U]], /) -> Step[T, U]: ...
@overload
def step(fn: abc.Callable[[T], abc.Awaitable[U]], /) -> Step[T, U]: ...
@overload
def step(fn: abc.Callable[[FlowContext, T], U], /) -> Step[T, U]: ...
@overload
def step(fn: abc.Callable[[T], U], /) -> Step[T, U]: ...
@overload
def step(
    *,
    name: str | None = None,
    compensate: abc.Callable[..., Any] | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | dt.timedelta | None = None,
    inline: bool = False,
    critical: bool = True,
) -> abc.Callable[[abc.Callable[..., Any]], Step[Any, Any]]: ...


def step(
    fn: abc.Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    compensate: abc.Callable[..., Any] | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | dt.timedelta | None = None,
    inline: bool = False,
    critical: bool = True,
) -> Step[Any, Any] | abc.Callable[[abc.Callable[..., Any]], Step[Any, Any]]:
    """
    Turn a function into a ``Step``: ``@step`` or ``@step(name=..., retry=...)``.

    .. versionadded:: 0.1.0
    """

    def make(func: abc.Callable[..., Any]) -> Step[Any, Any]:
        return Step(
            func,
            name=name,
            compensate=compensate,
            retry=retry,
            timeout=timeout,
            inline=inline,
            critical=critical,
        )

    if fn is not None:
        return make(fn)
    return make


@final
@attrs.frozen(repr=False)
class Call(_Leaf[Any, Any]):
    """
    A leaf that calls a service method: ``await ctx.services[service].<method>(input)``.

    Declarative, so a tree of calls needs no function per call and can be
    drawn (and later stored) as data. A coroutine method is awaited; a plain
    method runs in a worker thread unless ``inline=True``, and an awaitable it
    returns is awaited too.

    Attributes:
        service: The key in ``ctx.services``.
        method: The method to call with the input.
        compensate: The undo: a method name on the same service, called with
            the call's output, or a function as for ``Step``.
        retry: As for ``Step``.
        timeout: As for ``Step``.
        inline: As for ``Step``.
        critical: As for ``Step``.
        output_type: What the method returns (a class, or a typing form such
            as ``list[Item]``): what a journaled output is read back as when
            a durable run resumes. A method's return type cannot be read from
            a service that is only named, so without it a resumed run gets
            the output as JSON data (a dict for an attrs class).
        idempotency_key: The name of a keyword argument of the method that
            receives ``ctx.idempotency_key`` (stable for the run and the node,
            across retries and resumes), so the service can drop a repeated
            call: ``idempotency_key="key"`` calls ``method(input, key=...)``.
            The undo is called without it (a key is one request's).
        name: The call's path segment; its index in its parent if not given.

    .. versionadded:: 0.1.0
    """

    service: str
    method: str
    compensate: str | abc.Callable[..., Any] | None = attrs.field(default=None, kw_only=True)
    retry: RetryPolicy | None = attrs.field(default=None, kw_only=True)
    timeout: float | None = attrs.field(default=None, kw_only=True, converter=to_seconds)
    inline: bool = attrs.field(default=False, kw_only=True)
    critical: bool = attrs.field(default=True, kw_only=True)
    output_type: Any = attrs.field(default=Any, kw_only=True)
    idempotency_key: str | None = attrs.field(default=None, kw_only=True)
    name: str | None = attrs.field(default=None, kw_only=True)
    _undo: abc.Callable[..., abc.Awaitable[Any]] | None = attrs.field(
        init=False, eq=False, repr=False
    )

    def __attrs_post_init__(self) -> None:
        """
        Validate the options and prepare the undo.
        """
        check_name(self.name, f"Call {self.label!r}")
        owner = f"Call {(self.name or self.label)!r}"
        _check_timeout(owner, self.timeout)
        _check_retry(owner, self.retry)
        _check_output_type(owner, self.output_type)
        for field in ("service", "method"):
            value = getattr(self, field)
            if not isinstance(value, str) or not value:
                msg = f"Call: {field} must be a non-empty str, got {value!r}"
                raise FlowDefinitionError(msg)
        key: object = self.idempotency_key  # checked: it may come from untyped code
        if key is not None and not (isinstance(key, str) and key.isidentifier()):
            msg = f"{owner}: idempotency_key names a keyword argument, got {key!r}"
            raise FlowDefinitionError(msg)
        undo: abc.Callable[..., abc.Awaitable[Any]] | None
        if isinstance(self.compensate, str):
            undo = self._undo_method
        else:
            undo = _undo_caller(owner, self.compensate, inline=self.inline)
        object.__setattr__(self, "_undo", undo)

    @property
    def label(self) -> str:
        """
        ``service.method``, for messages, logs and diagrams.
        """
        return f"{self.service}.{self.method}"

    def _bound(self, ctx: FlowContext, method: str) -> abc.Callable[..., Any]:
        try:
            service = ctx.services[self.service]
        except KeyError:
            known = ", ".join(sorted(ctx.services)) or "none"
            msg = (
                f"{title(self)} at {format_path(ctx.path)} in run {ctx.run_id}: no service "
                f"named {self.service!r} in ctx.services (known: {known})"
            )
            raise ServiceNotFound(
                msg, path=ctx.path, run_id=ctx.run_id, service=self.service
            ) from None
        bound = getattr(service, method, None)
        if bound is None or not callable(bound):
            msg = f"service {self.service!r} ({type(service).__name__}) has no method {method!r}"
            raise AttributeError(msg)
        return bound  # type: ignore[no-any-return]

    async def execute(self, ctx: FlowContext, input: Any) -> Any:
        """
        Call the service method, under the timeout and retry policy if any.

        The service and method are looked up first: a missing one is a
        configuration error, raised at once and never retried.
        """
        bound = self._bound(ctx, self.method)
        if self.idempotency_key is not None:
            bound = functools.partial(bound, **{self.idempotency_key: ctx.idempotency_key})
        call = make_caller(bound, with_ctx=False, inline=self.inline)
        if self.retry is None and self.timeout is None:
            return await call(ctx, input)
        return await call_with_policy(
            self, ctx, call, input, retry=self.retry, timeout=self.timeout
        )

    async def _undo_method(self, ctx: FlowContext, _input: Any, output: Any) -> Any:
        assert isinstance(self.compensate, str)  # noqa: S101 -- chosen in __attrs_post_init__
        bound = self._bound(ctx, self.compensate)
        return await make_caller(bound, with_ctx=False, inline=self.inline)(ctx, output)

    def __repr__(self) -> str:
        compensate = self.compensate
        return node_repr(
            "Call",
            [repr(self.service), repr(self.method)],
            compensate=(
                compensate
                if compensate is None or isinstance(compensate, str)
                else _Raw(callable_name(compensate))
            ),
            retry=self.retry,
            timeout=self.timeout,
            inline=self.inline or None,
            critical=None if self.critical else False,
            output_type=None if self.output_type is Any else _Raw(_type_name(self.output_type)),
            idempotency_key=self.idempotency_key,
            name=self.name,
        )
