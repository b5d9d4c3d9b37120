"""
Instrumented: logs, spans and metrics for a node, or for every node below it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, final

import attrs

from .._core import WRAPPED, Child, Flow, check_name, describe, invoke, unwrap
from ..combinators._node import Node, as_flow
from ._telemetry import Telemetry

if TYPE_CHECKING:
    from collections import abc

    from .._core import FlowContext


@final
@attrs.frozen(init=False, repr=False)
class Instrumented(Node[Any, Any]):
    """
    Observe a flow: structlog events, an OpenTelemetry span, and metrics.

    Each run of the wrapped flow logs ``systemflow.flow_started`` and then
    ``flow_completed`` or ``flow_failed`` (with the flow name, path, run id,
    duration, and the error), opens a span ``<Kind> <name>`` that nests under
    the current span (error status and the exception recorded on failure),
    and counts ``systemflow.flow.started`` / ``completed`` / ``failed`` and
    records ``systemflow.flow.duration`` by flow name. Input and output are
    logged only with ``log_input`` / ``log_output``: they may hold personal data.

    With ``recursive=True`` every node below is observed the same way, each
    with its own path, so one wrapper instruments a whole tree.

    ``Instrumented`` adds no path segment and its ``name`` is not one: the
    wrapped flow keeps its path whatever the wrapper is called. Inside a
    ``recursive=True`` one, an ``Instrumented`` adds nothing: its flow is
    already observed.

    Attributes:
        flow: The wrapped flow.
        recursive: Observe every node below, not only the wrapped flow.
        log_input: Include the input in ``flow_started``.
        log_output: Include the output in ``flow_completed``.
        name: The flow name in telemetry; the wrapped flow's name (or kind) if not given.
            Not a path segment.

    .. versionadded:: 0.1.0
    """

    flow: Flow[Any, Any]
    recursive: bool = attrs.field(default=False, kw_only=True)
    log_input: bool = attrs.field(default=False, kw_only=True)
    log_output: bool = attrs.field(default=False, kw_only=True)
    name: str | None = attrs.field(default=None, kw_only=True)
    children: tuple[Child, ...] = attrs.field(init=False, eq=False, repr=False)

    def __init__(
        self,
        flow: Flow[Any, Any] | abc.Callable[..., Any],
        name: str | None = None,
        *,
        recursive: bool = False,
        log_input: bool = False,
        log_output: bool = False,
    ) -> None:
        inner = as_flow(flow, f"Instrumented {name!r}" if name else "Instrumented")
        check_name(name, f"Instrumented {name!r}")
        self.__attrs_init__(
            inner, recursive=recursive, log_input=log_input, log_output=log_output, name=name
        )
        object.__setattr__(self, "children", ((None, inner),))

    @property
    def label(self) -> str:
        """
        What the telemetry calls an unnamed ``Instrumented``: what it wraps.
        """
        return describe(self.flow)

    @property
    def critical(self) -> bool:
        """
        Whether a failure of the wrapped flow fails its parent (the wrapped flow's say).
        """
        return bool(getattr(self.flow, "critical", True))

    async def execute(self, ctx: FlowContext, input: Any) -> Any:
        """
        Run the wrapped flow under observation.
        """
        # A failure goes up as it is: this wrapper's parent decides what a skip yields.
        root = unwrap(self.flow)
        outer = ctx._observer  # noqa: SLF001 -- the context's private hook, ours
        if isinstance(outer, Telemetry) and (outer.recursive or outer.root is root):
            # An outer Instrumented already observes this flow.
            return await invoke(self.flow, ctx, None, input, WRAPPED)
        telemetry = Telemetry(
            root,
            describe(self),
            recursive=self.recursive,
            log_input=self.log_input,
            log_output=self.log_output,
        )
        observed = ctx._with(observer=telemetry)  # noqa: SLF001 -- the context's private hook, ours
        return await invoke(self.flow, observed, None, input, WRAPPED)

    def __repr__(self) -> str:
        options = {
            "recursive": self.recursive or None,
            "log_input": self.log_input or None,
            "log_output": self.log_output or None,
            "name": self.name,
        }
        parts = [repr(self.flow)] + [f"{k}={v!r}" for k, v in options.items() if v is not None]
        return f"Instrumented({', '.join(parts)})"
