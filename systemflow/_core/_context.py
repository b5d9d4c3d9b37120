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
@attrs.frozen
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

    services: abc.Mapping[str, Any] = attrs.field(
        default=None, converter=_freeze_services, eq=False, repr=False
    )
    run_id: str = attrs.field(factory=new_run_id)
    path: Path = ()
    _logger: Any = attrs.field(default=None, eq=False, repr=False, alias="logger")
    clock: Clock = attrs.field(default=SYSTEM_CLOCK, eq=False, repr=False)
    journal: Journal | None = attrs.field(default=None, eq=False, repr=False)
    _scope: CompensationScope | None = attrs.field(
        default=None, eq=False, repr=False, alias="scope"
    )
    _observer: Observer | None = attrs.field(default=None, eq=False, repr=False, alias="observer")

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
        base = self._logger if self._logger is not None else _LOGGER
        return base.bind(run_id=self.run_id, path=format_path(self.path), **values)

    @property
    def idempotency_key(self) -> str:
        """
        A key stable for this run and this node, for services to deduplicate on.

        Pass it along so that a retried or re-run step does not repeat its effect.
        """
        return f"{self.run_id}:{format_path(self.path)}"

    def child(self, segment: Segment) -> FlowContext:
        """
        Return the context of a child node at ``segment`` below this one.
        """
        return FlowContext(
            self.services,
            self.run_id,
            (*self.path, segment),
            self._logger,
            self.clock,
            self.journal,
            self._scope,
            self._observer,
        )
