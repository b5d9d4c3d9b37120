"""
Calling user functions: sync or async, with or without the context.

A step function takes ``(input)`` or ``(ctx, input)``, a compensation
``(input, output)`` or ``(ctx, input, output)``, a predicate ``(input)`` or
``(ctx, input)``. Each is classified once, at construction, into a caller that
always takes the context first and always returns an awaitable.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from typing import TYPE_CHECKING, Any

from ._errors import FlowDefinitionError

if TYPE_CHECKING:
    from collections import abc

    from ._context import FlowContext

Caller = "abc.Callable[..., abc.Awaitable[Any]]"


def callable_name(fn: object) -> str:
    """
    Return a readable name for a function, method, partial or callable object.
    """
    if isinstance(fn, functools.partial):
        return callable_name(fn.func)
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if name is None:
        return type(fn).__name__
    # A function defined inside another reads better without "outer.<locals>.".
    return str(name).rpartition("<locals>.")[2]


def is_async_callable(fn: object) -> bool:
    """
    Tell whether calling ``fn`` returns a coroutine (async def, or async ``__call__``).
    """
    if inspect.iscoroutinefunction(fn):
        return True
    dunder_call = getattr(type(fn), "__call__", None)  # noqa: B004 -- we want the method
    return not inspect.isroutine(fn) and inspect.iscoroutinefunction(dunder_call)


def _positional_counts(fn: object) -> tuple[int, float] | None:
    try:
        sig = inspect.signature(fn)  # type: ignore[arg-type]
    except (TypeError, ValueError):  # some builtins have no signature
        return None
    required = 0
    accepted: float = 0
    for param in sig.parameters.values():
        if param.kind is param.VAR_POSITIONAL:
            accepted = float("inf")
        elif param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            accepted += 1
            if param.default is param.empty:
                required += 1
        elif param.kind is param.KEYWORD_ONLY and param.default is param.empty:
            return (-1, 0)  # cannot be called positionally at all
    return required, accepted


def wants_context(fn: object, n_args: int, *, role: str, form: str) -> bool:
    """
    Tell whether ``fn`` takes the context before its ``n_args`` arguments.

    Raises:
        FlowDefinitionError: ``fn`` is not callable, or fits neither calling form.
    """
    if callable(getattr(fn, "execute", None)):
        msg = f"{role}: expected a function, got the flow {fn!r}"
        raise FlowDefinitionError(msg)
    if not callable(fn):
        msg = f"{role}: expected a function, got {type(fn).__name__} {fn!r}"
        raise FlowDefinitionError(msg)
    counts = _positional_counts(fn)
    if counts is None:
        return False
    required, accepted = counts
    if required < 0:
        msg = (
            f"{role}: {callable_name(fn)!r} has a required keyword-only parameter; expected {form}"
        )
        raise FlowDefinitionError(msg)
    if required == n_args + 1:
        return True
    if required <= n_args <= accepted:
        return False
    msg = (
        f"{role}: {callable_name(fn)!r} takes {required} required positional "
        f"argument(s); expected {form}"
    )
    raise FlowDefinitionError(msg)


def make_caller(
    fn: abc.Callable[..., Any], *, with_ctx: bool, inline: bool
) -> abc.Callable[..., abc.Awaitable[Any]]:
    """
    Return ``call(ctx, *args)`` which runs ``fn`` the right way and returns an awaitable.

    Coroutine functions are called directly. Sync functions run in a worker
    thread (they are usually blocking I/O) unless ``inline``; if a sync function
    returns an awaitable, it is awaited too.
    """
    if is_async_callable(fn):
        if with_ctx:
            return fn
        return lambda _ctx, *args: fn(*args)

    if inline:

        async def call_inline(ctx: FlowContext, *args: Any) -> Any:
            result = fn(ctx, *args) if with_ctx else fn(*args)
            if inspect.isawaitable(result):
                result = await result
            return result

        return call_inline

    async def call_in_thread(ctx: FlowContext, *args: Any) -> Any:
        if with_ctx:
            result = await asyncio.to_thread(fn, ctx, *args)
        else:
            result = await asyncio.to_thread(fn, *args)
        if inspect.isawaitable(result):
            result = await result
        return result

    return call_in_thread
