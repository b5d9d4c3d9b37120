"""
The structlog events, OpenTelemetry spans and metrics of instrumented nodes.

Only ``opentelemetry-api`` is required: without an SDK every call is a no-op.
The library never configures logging or an SDK; the application does.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, final

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace

from .._core import FlowPaused, describe, error_fields, format_path, interrupts, is_wrapper

if TYPE_CHECKING:
    from contextvars import Token

    from .._core import Flow, FlowContext

_SCOPE = "systemflow"

tracer = trace.get_tracer(_SCOPE)
_meter = metrics.get_meter(_SCOPE)
# The API hands out proxies until an SDK is installed, then forwards to it, so
# creating the instruments at import time is safe.
started_counter = _meter.create_counter(
    "systemflow.flow.started", unit="{run}", description="Instrumented flows started"
)
completed_counter = _meter.create_counter(
    "systemflow.flow.completed", unit="{run}", description="Instrumented flows completed"
)
failed_counter = _meter.create_counter(
    "systemflow.flow.failed", unit="{run}", description="Instrumented flows failed"
)
duration_histogram = _meter.create_histogram(
    "systemflow.flow.duration", unit="s", description="Duration of instrumented flows"
)


@final
class Telemetry:
    """
    Strictly private: the observer ``Instrumented`` installs.

    For each node it reports: a span (``<Kind> <name>``, nested as the tree
    nests), the structlog events ``systemflow.flow_started`` /
    ``flow_completed`` / ``flow_failed`` / ``flow_paused`` / ``flow_cancelled``,
    and the counters and duration histogram.
    """

    __slots__ = ("log_input", "log_output", "recursive", "root", "root_name")

    def __init__(
        self,
        root: Flow[Any, Any],
        root_name: str,
        *,
        recursive: bool,
        log_input: bool,
        log_output: bool,
    ) -> None:
        self.root = root
        self.root_name = root_name
        self.recursive = recursive
        self.log_input = log_input
        self.log_output = log_output

    def _observes(self, node: Flow[Any, Any]) -> bool:
        if node is self.root:
            return True
        # A wrapper is skipped: the node it wraps is observed at the same path.
        return self.recursive and not is_wrapper(node)

    def node_reused(
        self, node: Flow[Any, Any], ctx: FlowContext, error: BaseException | None, output: Any
    ) -> None:
        """
        Report a node whose journaled result was reused on resume.

        It gets a span and log events marked ``reused``, never a fake re-execution.
        """
        if not self._observes(node):
            return
        token = self.node_started(node, ctx, None, reused=True)
        self.node_finished(token, error, output)

    def node_started(
        self, node: Flow[Any, Any], ctx: FlowContext, value: Any, *, reused: bool = False
    ) -> object:
        """
        Open the node's span and log that it started.
        """
        if not self._observes(node):
            return None
        name = self.root_name if node is self.root else describe(node)
        kind = type(node).__name__
        where = format_path(ctx.path)
        span = tracer.start_span(
            kind if name == kind else f"{kind} {name}",
            attributes={
                "systemflow.flow": name,
                "systemflow.node": kind,
                "systemflow.path": where,
                "systemflow.run_id": ctx.run_id,
                "systemflow.reused": reused,
            },
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        log = ctx.bind_logger(flow=name, node=kind)
        if reused:
            # The node did not run: its result came from the journal.
            log = log.bind(reused=True)
        extra = {"input": value} if self.log_input and not reused else {}
        log.info("systemflow.flow_started", **extra)
        started_counter.add(1, {"systemflow.flow": name})
        return _Token(span, token, log, name, time.perf_counter(), ctx.journal is not None)

    def node_finished(self, token: object, error: BaseException | None, output: Any) -> None:
        """
        Close the node's span, log how it ended and record the metrics.
        """
        if token is None:
            return
        assert isinstance(token, _Token)  # noqa: S101 -- handed out by node_started
        duration = time.perf_counter() - token.start
        span, log, attrs = token.span, token.log, {"systemflow.flow": token.name}
        ms = round(duration * 1000, 3)
        try:
            if error is None:
                extra = {"output": output} if self.log_output else {}
                log.info("systemflow.flow_completed", duration_ms=ms, **extra)
                completed_counter.add(1, attrs)
                outcome = "completed"
            elif isinstance(error, FlowPaused):
                span.set_attribute("systemflow.paused", value=True)
                log.info("systemflow.flow_paused", duration_ms=ms)
                outcome = "paused"
            elif interrupts(error, token.durable):
                # A durable run handed back unfinished (a missing service, a lost
                # lease): not the flow's failure, but worth a warning.
                span.set_attribute("systemflow.handed_back", value=True)
                log.warning("systemflow.flow_handed_back", duration_ms=ms, **error_fields(error))
                outcome = "handed_back"
            elif isinstance(error, asyncio.CancelledError):
                span.set_attribute("systemflow.cancelled", value=True)
                log.info("systemflow.flow_cancelled", duration_ms=ms)
                outcome = "cancelled"
            else:
                span.record_exception(error)
                span.set_status(trace.Status(trace.StatusCode.ERROR, str(error)))
                log.error("systemflow.flow_failed", duration_ms=ms, **error_fields(error))
                failed_counter.add(1, attrs)
                outcome = "failed"
            duration_histogram.record(duration, {**attrs, "systemflow.outcome": outcome})
        finally:
            otel_context.detach(token.context_token)
            span.end()


@final
class _Token:
    __slots__ = ("context_token", "durable", "log", "name", "span", "start")

    def __init__(  # noqa: PLR0917 -- private, made in one place
        self,
        span: trace.Span,
        context_token: Token[otel_context.Context],
        log: Any,
        name: str,
        start: float,
        durable: bool,
    ) -> None:
        self.span = span
        self.context_token = context_token
        self.log = log
        self.name = name
        self.start = start
        self.durable = durable
