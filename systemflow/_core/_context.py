"""
The context a node runs in.
"""

from __future__ import annotations

import os
import time
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, final

import attrs
import structlog

from ._clock import SYSTEM_CLOCK, Clock
from ._errors import format_path

if TYPE_CHECKING:
    from collections import abc

    from ._flow import Flow, Path, Segment
    from ._journal import Journal


# A lazy proxy: it picks up structlog.configure() calls made after import.
_LOGGER = structlog.get_logger("systemflow")


def new_run_id() -> str:
    """
    Return a new UUIDv7 (RFC 9562) as a string: time-ordered, so ids sort by start.
    """
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a, 12 bits
    value |= 0b10 << 62  # variant
    value |= rand & ((1 << 62) - 1)  # rand_b, 62 bits
    # str(uuid.UUID(int=value)), without building the UUID (its checks cost twice this).
    hex_ = f"{value:032x}"
    return f"{hex_[:8]}-{hex_[8:12]}-{hex_[12:16]}-{hex_[16:20]}-{hex_[20:]}"


class Observer(Protocol):
    """
    Strictly private: what instrumentation hooks into the invoke helper.
    """

    def node_started(self, node: Flow[Any, Any], ctx: FlowContext, value: Any) -> object:
        """
        Note that a node starts; return a token handed back when it ends.
        """
        ...

    def node_finished(self, token: object, error: BaseException | None, output: Any) -> None:
        """
        Note that the node of ``token`` ended, with ``error`` or ``output``.
        """
        ...

    def node_reused(
        self, node: Flow[Any, Any], ctx: FlowContext, error: BaseException | None, output: Any
    ) -> None:
        """
        Note that a node's journaled result was reused instead of running it again.
        """
        ...


@final
class Undo:
    """
    Strictly private: a completed step's undo, waiting in a compensation scope.
    """

    __slots__ = ("ctx", "input", "node", "output", "seq")

    def __init__(
        self, node: Flow[Any, Any], ctx: FlowContext, input: Any, output: Any, seq: int
    ) -> None:
        self.node = node
        self.ctx = ctx
        self.input = input
        self.output = output
        self.seq = seq  # completion order: the journal's sequence number, if journaled


@final
class CompensationScope:
    """
    Strictly private: the undos registered below one ``Compensatable``, oldest first.
    """

    __slots__ = ("undos",)

    def __init__(self) -> None:
        self.undos: list[Undo] = []


_NO_SERVICES: abc.Mapping[str, Any] = MappingProxyType({})  # read-only, so one will do


def _freeze_services(services: abc.Mapping[str, Any] | None) -> abc.Mapping[str, Any]:
    if services is None:
        return _NO_SERVICES
    if isinstance(services, MappingProxyType):
        return services
    return MappingProxyType(dict(services))


@final
class _Shared:
    """
    Strictly private: what the contexts below one root, scope and observer have in common.

    A child context shares it and adds a path segment: two slots to fill per
    node instead of eight (see decision 10 in docs/decisions.md).
    """

    __slots__ = ("clock", "journal", "logger", "observer", "run_id", "scope", "services")

    def __init__(  # noqa: PLR0917 -- a record of seven, made in two places
        self,
        services: abc.Mapping[str, Any],
        run_id: str,
        logger: Any,
        clock: Clock,
        journal: Journal | None,
        scope: CompensationScope | None,
        observer: Observer | None,
    ) -> None:
        self.services = services
        self.run_id = run_id
        self.logger = logger
        self.clock = clock
        self.journal = journal
        self.scope = scope
        self.observer = observer


@final
class FlowContext:
    """
    Everything a node knows about where and how it runs.

    Contexts are immutable; each node gets its own, made by ``child``. Build a
    root context for ``execute`` to pass services (the dependency injection
    that tests replace with mocks), a run id, a logger or a clock.

    Attributes:
        services: Named services the steps call (``ctx.services["payments"]``).
        run_id: The id of this run (a UUIDv7 unless given).
        path: Where the current node sits in the tree.
        clock: What retry backoff and timers use to tell and wait for time.
        journal: The durable run's journal, when the flow runs under ``Stateful``.

    .. versionadded:: 0.1.0
    """

    __slots__ = ("__weakref__", "_shared", "path")
    __match_args__ = ("services", "run_id", "path")  # as the attrs class's first three

    _shared: _Shared

    if TYPE_CHECKING:

        @property
        def path(self) -> Path:  # a slot at run time; read-only to type checkers too
            ...

    def __init__(  # noqa: PLR0917 -- positional as the attrs class before it
        self,
        services: abc.Mapping[str, Any] | None = None,
        run_id: str | None = None,
        path: Path = (),
        logger: Any = None,
        clock: Clock = SYSTEM_CLOCK,
        journal: Journal | None = None,
        scope: CompensationScope | None = None,
        observer: Observer | None = None,
    ) -> None:
        shared = _Shared(
            _freeze_services(services),
            new_run_id() if run_id is None else run_id,
            logger,
            clock,
            journal,
            scope,
            observer,
        )
        _set_shared(self, shared)
        _set_path(self, path)

    def __setattr__(self, name: str, value: Any) -> None:
        raise attrs.exceptions.FrozenInstanceError

    def __delattr__(self, name: str) -> None:
        raise attrs.exceptions.FrozenInstanceError

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FlowContext):
            return NotImplemented
        return (self.run_id, self.path) == (other.run_id, other.path)

    def __hash__(self) -> int:
        return hash((self.run_id, self.path))

    def __repr__(self) -> str:
        return f"FlowContext(run_id={self.run_id!r}, path={self.path!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # copy.copy: its __setattr__ would refuse the slots' state.
        return (_rebuild, (self._shared, self.path))

    @property
    def services(self) -> abc.Mapping[str, Any]:
        """
        Named services the steps call (``ctx.services["payments"]``), read-only.
        """
        return self._shared.services

    @property
    def run_id(self) -> str:
        """
        The id of this run.
        """
        return self._shared.run_id

    @property
    def clock(self) -> Clock:
        """
        What retry backoff and timers use to tell and wait for time.
        """
        return self._shared.clock

    @property
    def journal(self) -> Journal | None:
        """
        The durable run's journal, when the flow runs under ``Stateful``.
        """
        return self._shared.journal

    @property
    def _scope(self) -> CompensationScope | None:
        return self._shared.scope

    @property
    def _observer(self) -> Observer | None:
        return self._shared.observer

    @property
    def logger(self) -> Any:
        """
        A structlog logger bound to this run's id and this node's path.
        """
        return self.bind_logger()

    def bind_logger(self, **values: Any) -> Any:
        """
        Return ``logger`` with more key-values bound, in one bind.
        """
        shared = self._shared
        base = shared.logger if shared.logger is not None else _LOGGER
        return base.bind(run_id=shared.run_id, path=format_path(self.path), **values)

    @property
    def idempotency_key(self) -> str:
        """
        A key stable for this run and this node, for services to deduplicate on.

        Pass it along so that a retried or re-run step does not repeat its effect.
        """
        return f"{self._shared.run_id}:{format_path(self.path)}"

    def child(self, segment: Segment) -> FlowContext:
        """
        Return the context of a child node at ``segment`` below this one.
        """
        return _rebuild(self._shared, (*self.path, segment))

    def _with(
        self, *, scope: CompensationScope | None = None, observer: Observer | None = None
    ) -> FlowContext:
        # Strictly private: this context under a new compensation scope or observer.
        shared = self._shared
        changed = _Shared(
            shared.services,
            shared.run_id,
            shared.logger,
            shared.clock,
            shared.journal,
            shared.scope if scope is None else scope,
            shared.observer if observer is None else observer,
        )
        return _rebuild(changed, self.path)


# Filling a context's slots around its __setattr__, which refuses: it is immutable.
_new = object.__new__
_slots: Any = FlowContext.__dict__
_set_shared: abc.Callable[[FlowContext, _Shared], None] = _slots["_shared"].__set__
_set_path: abc.Callable[[FlowContext, Path], None] = _slots["path"].__set__


def _rebuild(shared: _Shared, path: Path) -> FlowContext:
    # A context from its two slots, without __init__: child, _with and copy.copy.
    ctx = _new(FlowContext)
    _set_shared(ctx, shared)
    _set_path(ctx, path)
    return ctx
