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
import types
import typing
from collections import abc
from typing import TYPE_CHECKING, Any

from ._errors import FlowDefinitionError

if TYPE_CHECKING:
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


def return_type(fn: object) -> Any:
    """
    Return what a step function's call gives, as annotated (``Any`` if unknown).

    For ``async def f() -> int`` it is ``int``, the result of awaiting the call;
    a sync function annotated ``-> Awaitable[int]`` gives ``int`` too. A class
    gives itself.
    """
    if isinstance(fn, type):
        return fn
    hint = _hint(_annotated(fn), "return")
    while typing.get_origin(hint) in {abc.Awaitable, abc.Coroutine}:
        hint = typing.get_args(hint)[-1]
    return hint


def input_type(fn: object) -> Any:
    """
    Return the annotation of a step function's input parameter (``Any`` if unknown).

    The input is the first positional parameter, or the second when the
    function takes the context first (decided as the step decides it).
    """
    try:
        with_ctx = wants_context(fn, 1, role="input_type", form="(input) or (ctx, input)")
        params = list(inspect.signature(fn).parameters.values())  # type: ignore[arg-type]
    except (TypeError, ValueError):  # FlowDefinitionError is both
        return Any
    positional = [p for p in params if p.kind in {p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD}]
    index = 1 if with_ctx else 0
    if index < len(positional):
        name = positional[index].name
    else:
        name = next((p.name for p in params if p.kind is p.VAR_POSITIONAL), "")
    target = fn.__init__ if isinstance(fn, type) else _annotated(fn)  # type: ignore[misc]
    return _hint(target, name) if name else Any


def _annotated(fn: object) -> object:
    """
    Return the function whose annotations describe calling ``fn``.
    """
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.isroutine(fn) or not callable(fn):
        return fn
    return fn.__call__  # a callable object: its bound __call__


def _hint(fn: object, name: str) -> Any:
    """
    Return the resolved annotation ``name`` of ``fn``, or ``Any``.

    If another annotation of ``fn`` cannot be resolved (a name imported only
    for type checking, say), this one is resolved on its own.
    """
    try:
        hint = typing.get_type_hints(fn).get(name, Any)
    except Exception:  # noqa: BLE001 -- annotations are the user's code; fall back below
        try:
            raw = inspect.get_annotations(fn)[name]  # type: ignore[arg-type]
            scope = getattr(inspect.unwrap(fn), "__globals__", {})  # type: ignore[arg-type]
            one = types.SimpleNamespace(__annotations__={name: raw})
            hint = typing.get_type_hints(one, globalns=scope)[name]
        except Exception:  # noqa: BLE001 -- unresolvable: unknown
            return Any
    return Any if isinstance(hint, typing.TypeVar) else hint
