"""
MockService: a stand-in for a service, answering only what it was told to.

A mock records every call as a ``ServiceCall``, in order, on itself and on a
``CallLog`` that several mocks may share, so a test can check the order of
calls across services (refund before release).
"""

from __future__ import annotations

import difflib
import inspect
import itertools
import threading
from typing import TYPE_CHECKING, Any, final

import attrs

if TYPE_CHECKING:
    from collections import abc

# One sequence for every call of every mock: calls of mocks that share no log
# can still be put in the order they happened.
_SEQ = itertools.count(1)
_SEQ_LOCK = threading.Lock()  # sync mocks are called from worker threads

# MockService's own attributes: a service method of one of these names cannot be mocked.
_OWN = frozenset({"calls", "calls_to", "log", "name", "on", "reset", "spec", "sync", "unexpected"})


def _next_seq() -> int:
    with _SEQ_LOCK:
        return next(_SEQ)


@final
@attrs.frozen
class ServiceCall:
    """
    One call a ``MockService`` received.

    Not to be confused with ``systemflow.Call``, the flow leaf that makes such
    calls. Compares by service, method and arguments, so a test can write
    ``assert [ServiceCall("payments", "charge", (order,))] == payments.calls``.

    Attributes:
        service: The mock's name.
        method: The method called.
        args: The positional arguments.
        kwargs: The keyword arguments.

    .. versionadded:: 0.1.0
    """

    service: str
    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = attrs.field(factory=dict)
    seq: int = attrs.field(factory=_next_seq, eq=False, repr=False, kw_only=True)

    @property
    def target(self) -> str:
        """
        ``service.method``, as assertions name calls.
        """
        return f"{self.service}.{self.method}"

    def __str__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.target}({', '.join(parts)})"


@final
class CallLog:
    """
    The calls of several mocks, in the order they happened.

    Give the same log to several mocks (``MockService(name, log=log)``) to
    check the order of calls across services.

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: list[ServiceCall] = []

    def record(self, call: ServiceCall) -> None:
        """
        Add a call (mocks do this as they are called).
        """
        self._calls.append(call)

    @property
    def calls(self) -> list[ServiceCall]:
        """
        Every call recorded, oldest first.
        """
        return list(self._calls)

    @property
    def targets(self) -> list[str]:
        """
        ``service.method`` of every call, oldest first.
        """
        return [call.target for call in self._calls]

    def clear(self) -> None:
        """
        Forget the calls recorded so far.
        """
        self._calls.clear()

    def __len__(self) -> int:
        return len(self._calls)

    def __repr__(self) -> str:
        return f"CallLog({', '.join(map(str, self._calls))})"


@final
class UnexpectedCall(AssertionError, AttributeError):
    """
    A flow used a method of a ``MockService`` that the test did not configure.

    It is an ``AssertionError`` (the test is wrong or the flow is) and an
    ``AttributeError`` (the mock has no such method), so ``hasattr`` and
    ``getattr(mock, name, None)`` behave as for a real object without it.

    .. versionadded:: 0.1.0
    """


@final
class _Raise:
    __slots__ = ("error",)

    def __init__(self, error: BaseException | type[BaseException]) -> None:
        self.error = error


@final
class _Compute:
    __slots__ = ("fn",)

    def __init__(self, fn: abc.Callable[..., Any]) -> None:
        self.fn = fn


def _answer(value: Any) -> Any:
    # then(...) reads an exception (instance or class) as "raise it".
    if isinstance(value, BaseException) or (
        isinstance(value, type) and issubclass(value, BaseException)
    ):
        return _Raise(value)
    return value


@final
class MockMethod:
    """
    How one method of a ``MockService`` answers; made by ``MockService.on``.

    Each answer is used for one call, in order, and the last one for every
    call after it: ``.raises(Timeout()).then(Timeout(), payment)`` fails
    twice, then returns ``payment`` from then on. A method configured with
    no answer returns ``None``.

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_answers", "_service", "_used", "method")

    def __init__(self, service: MockService, method: str) -> None:
        self._service = service
        self.method = method
        self._answers: list[Any] = []  # none yet: calls return None
        self._used = 0

    def returns(self, value: Any) -> MockMethod:
        """
        Answer every call with ``value`` (replacing earlier answers).
        """
        return self._set(value)

    def raises(self, error: BaseException | type[BaseException]) -> MockMethod:
        """
        Raise ``error`` (an exception, or its class) on every call (replacing earlier answers).
        """
        return self._set(_Raise(error))

    def calls(self, fn: abc.Callable[..., Any]) -> MockMethod:
        """
        Answer every call with ``fn(*args, **kwargs)``, awaited if it returns an awaitable.
        """
        return self._set(_Compute(fn))

    def then(self, *answers: Any) -> MockMethod:
        """
        Answer the calls after the ones configured so far: one answer per call, in order.

        ``on("m").then(a, b)`` answers ``a``, then ``b`` from then on.

        An exception (instance or class) is raised; anything else is returned.
        The last answer repeats for every later call.
        """
        if not answers:
            msg = f"{self._service.name}.{self.method}: then() needs at least one answer"
            raise TypeError(msg)
        self._answers.extend(_answer(a) for a in answers)
        return self

    def _set(self, answer: Any) -> MockMethod:
        self._answers = [answer]
        self._used = 0
        return self

    def _next(self) -> Any:
        if not self._answers:
            return None
        index = min(self._used, len(self._answers) - 1)
        self._used += 1
        return self._answers[index]

    def __repr__(self) -> str:
        return f"<MockMethod {self._service.name}.{self.method}>"


def _spec_class(spec: object) -> type:
    return spec if isinstance(spec, type) else type(spec)


def _signature(cls: type, method: str) -> inspect.Signature | None:
    # The signature a caller sees on an instance: without self for plain methods.
    raw = inspect.getattr_static(cls, method)
    try:
        sig = inspect.signature(getattr(cls, method))
    except (TypeError, ValueError):  # some builtins have none
        return None
    if isinstance(raw, staticmethod | classmethod) or not inspect.isfunction(raw):
        return sig
    params = list(sig.parameters.values())
    return sig.replace(parameters=params[1:])


@final
class MockService:
    """
    A fake service for flows under test: it answers the methods it was told about.

    ``mock.on("charge").returns(payment)`` configures a method; a flow's step
    then calls ``await ctx.services["payments"].charge(request)``. Using a
    method that was not configured raises ``UnexpectedCall`` naming the
    service and the method (and is remembered in ``unexpected``, so a flow
    that swallows the error cannot hide it from the harness).

    Methods are coroutine functions by default; ``sync=True`` makes them
    plain functions, for services called synchronously. With ``spec=`` (a
    class, or an instance of one) only the spec's methods can be configured,
    each call's arguments are checked against the method's signature, and
    each method is async or sync as the spec's is.

    Attributes:
        name: The service's name (the key in ``ctx.services``, by convention).
        spec: The class whose methods and signatures calls are checked against.
        sync: Whether methods without a spec are plain functions.
        log: The shared log calls are also recorded on, if any.
        unexpected: Names of methods used without being configured, in order.

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_calls", "_methods", "log", "name", "spec", "sync", "unexpected")

    def __init__(
        self,
        name: str,
        spec: object = None,
        *,
        sync: bool = False,
        log: CallLog | None = None,
    ) -> None:
        self.name = name
        self.spec: type | None = None if spec is None else _spec_class(spec)
        self.sync = sync
        self.log = log
        self.unexpected: list[str] = []
        self._calls: list[ServiceCall] = []
        self._methods: dict[str, MockMethod] = {}

    def on(self, method: str) -> MockMethod:
        """
        Configure ``method``; returns it to say how it answers (``returns``, ``raises``, ...).

        Raises:
            AttributeError: ``spec`` has no such method.
            ValueError: ``method`` is one of the mock's own attributes.
        """
        if method in _OWN or method.startswith("_"):
            msg = f"MockService {self.name!r}: cannot mock {method!r}, a name the mock itself uses"
            raise ValueError(msg)
        if self.spec is not None and not callable(getattr(self.spec, method, None)):
            known = [n for n in dir(self.spec) if not n.startswith("_")]
            close = difflib.get_close_matches(method, known, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            spec = self.spec.__qualname__
            msg = f"MockService {self.name!r}: {spec} has no method {method!r}{hint}"
            raise AttributeError(msg)
        configured = MockMethod(self, method)
        self._methods[method] = configured
        return configured

    @property
    def calls(self) -> list[ServiceCall]:
        """
        The calls this mock received, oldest first.
        """
        return list(self._calls)

    def calls_to(self, method: str) -> list[ServiceCall]:
        """
        The calls of ``method``, oldest first.
        """
        return [call for call in self._calls if call.method == method]

    def reset(self) -> None:
        """
        Forget the calls received (the configuration stays; answer sequences start over).
        """
        self._calls.clear()
        self.unexpected.clear()
        for configured in self._methods.values():
            configured._used = 0  # noqa: SLF001 -- our own class

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_"):
            raise AttributeError(method)
        configured = self._methods.get(method)
        if configured is None:
            self.unexpected.append(method)
            known = ", ".join(sorted(self._methods)) or "none"
            msg = (
                f"MockService {self.name!r}: method {method!r} was called but not configured "
                f"(configured: {known}); add {self.name}.on({method!r}).returns(...)"
            )
            raise UnexpectedCall(msg)
        return self._bind(configured)

    def _record(
        self,
        configured: MockMethod,
        sig: inspect.Signature | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        # Check and record one call, and give the method's next answer.
        method = configured.method
        if sig is not None:
            try:
                sig.bind(*args, **kwargs)
            except TypeError as exc:
                msg = (
                    f"MockService {self.name!r}: {method}{_bare(sig)} "
                    f"cannot be called with {_arguments(args, kwargs)}: {exc}"
                )
                raise TypeError(msg) from None
        call = ServiceCall(self.name, method, args, kwargs)
        self._calls.append(call)
        if self.log is not None:
            self.log.record(call)
        answer = configured._next()  # noqa: SLF001 -- our own class
        if isinstance(answer, _Raise):
            raise answer.error
        if isinstance(answer, _Compute):
            return answer.fn(*args, **kwargs)
        return answer

    def _bind(self, configured: MockMethod) -> abc.Callable[..., Any]:
        method = configured.method
        sig = None if self.spec is None else _signature(self.spec, method)
        if self.spec is None:
            is_async = not self.sync
        else:
            is_async = inspect.iscoroutinefunction(getattr(self.spec, method))
        record = self._record

        if is_async:

            async def async_method(*args: Any, **kwargs: Any) -> Any:
                out = record(configured, sig, args, kwargs)
                if inspect.isawaitable(out):
                    out = await out
                return out

            async_method.__name__ = async_method.__qualname__ = method
            return async_method

        def sync_method(*args: Any, **kwargs: Any) -> Any:
            return record(configured, sig, args, kwargs)

        sync_method.__name__ = sync_method.__qualname__ = method
        return sync_method

    def __repr__(self) -> str:
        spec = "" if self.spec is None else f", spec={self.spec.__qualname__}"
        return f"MockService({self.name!r}{spec})"


def _bare(sig: inspect.Signature) -> inspect.Signature:
    # The parameters without annotations (which may be strings): what a reader needs.
    params = [p.replace(annotation=p.empty) for p in sig.parameters.values()]
    return sig.replace(parameters=params, return_annotation=sig.empty)


def _arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"({', '.join(parts)})"
