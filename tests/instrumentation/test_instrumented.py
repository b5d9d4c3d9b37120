import pytest
import structlog
from opentelemetry import trace
from opentelemetry.trace import StatusCode

import systemflow as sf


async def inc(x: int) -> int:
    return x + 1


class Boom(Exception):
    pass


async def fail(_: int) -> int:
    raise Boom("card declined")


def _points(reader, name):
    """Return {(flow, outcome): value} of one metric from the in-memory reader."""
    data = reader.get_metrics_data()
    found = {}
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name != name:
                    continue
                for point in metric.data.data_points:
                    key = (
                        point.attributes.get("systemflow.flow"),
                        point.attributes.get("systemflow.outcome"),
                    )
                    found[key] = getattr(point, "value", None) or getattr(point, "count", None)
    return found


class TestLogs:
    async def test_started_and_completed(self):
        """A run logs flow_started and flow_completed with name, path, run id and duration."""
        flow = sf.Instrumented(sf.Step(inc), name="checkout")
        ctx = sf.FlowContext(run_id="r1")

        with structlog.testing.capture_logs() as logs:
            await sf.execute(flow, 1, context=ctx)

        started, completed = logs
        assert ("systemflow.flow_started", "checkout", "r1", "<root>") == (
            started["event"],
            started["flow"],
            started["run_id"],
            started["path"],
        )
        assert "systemflow.flow_completed" == completed["event"]
        assert completed["duration_ms"] >= 0
        assert "input" not in started
        assert "output" not in completed

    async def test_input_output_only_when_asked(self):
        """Input and output are logged only with log_input / log_output."""
        flow = sf.Instrumented(sf.Step(inc), log_input=True, log_output=True)

        with structlog.testing.capture_logs() as logs:
            await sf.execute(flow, 1)

        assert (1, 2) == (logs[0]["input"], logs[1]["output"])

    async def test_failure_logged_with_error(self):
        """A failure logs flow_failed with the error and its type, and still raises."""
        flow = sf.Instrumented(sf.Step(fail), name="pay")

        with structlog.testing.capture_logs() as logs, pytest.raises(sf.StepFailed):
            await sf.execute(flow, 1)

        failed = logs[-1]
        assert ("systemflow.flow_failed", "error", "StepFailed") == (
            failed["event"],
            failed["log_level"],
            failed["error_type"],
        )
        assert "card declined" in failed["error"]

    async def test_recursive_logs_every_node(self):
        """recursive=True logs every node below with its own path."""
        flow = sf.Instrumented(sf.Sequence(inc, sf.Step(inc, name="two")), recursive=True)

        with structlog.testing.capture_logs() as logs:
            await sf.execute(flow, 1)

        started = [(e["path"], e["node"]) for e in logs if e["event"] == "systemflow.flow_started"]
        assert [("<root>", "Sequence"), ("0", "Step"), ("two", "Step")] == started


class TestSpans:
    async def test_span_per_instrumented_node(self, spans):
        """An instrumented run records one span with the systemflow attributes."""
        flow = sf.Sequence(sf.Instrumented(sf.Step(inc, name="charge")))

        await sf.execute(flow, 1, context=sf.FlowContext(run_id="r2"))

        (span,) = spans.get_finished_spans()
        assert "Step charge" == span.name
        assert {
            "systemflow.flow": "charge",
            "systemflow.node": "Step",
            "systemflow.path": "charge",
            "systemflow.run_id": "r2",
            "systemflow.reused": False,
        } == dict(span.attributes)
        assert StatusCode.UNSET == span.status.status_code

    async def test_spans_nest_as_tree_nests(self, spans):
        """Recursive instrumentation gives child spans under their parent's span."""
        flow = sf.Instrumented(sf.Sequence(sf.Parallel(a=inc, b=inc), name="order"), recursive=True)
        tracer = trace.get_tracer("test")

        with tracer.start_as_current_span("request") as outer:
            await sf.execute(flow, 1)

        by_name = {s.name: s for s in spans.get_finished_spans()}
        order = by_name["Sequence order"]
        parallel = by_name["Parallel"]
        assert order.parent.span_id == outer.get_span_context().span_id
        assert parallel.parent.span_id == order.context.span_id
        steps = [s for s in spans.get_finished_spans() if s.name == "Step inc"]
        assert 2 == len(steps)
        assert all(s.parent.span_id == parallel.context.span_id for s in steps)
        assert {"0/a", "0/b"} == {s.attributes["systemflow.path"] for s in steps}

    async def test_failure_sets_error_status(self, spans):
        """A failing node's span has error status and the exception recorded."""
        with pytest.raises(sf.StepFailed):
            await sf.execute(sf.Instrumented(sf.Step(fail)), 1)

        (span,) = spans.get_finished_spans()
        assert StatusCode.ERROR == span.status.status_code
        assert ["exception"] == [e.name for e in span.events]
        assert "systemflow.StepFailed" == span.events[0].attributes["exception.type"]

    async def test_pause_is_not_an_error(self, spans):
        """A pause is marked on the span, not as an error."""

        async def pause(_: int) -> int:
            raise sf.FlowPaused("wait")

        with pytest.raises(sf.FlowPaused):
            await sf.execute(sf.Instrumented(sf.Step(pause)), 1)

        (span,) = spans.get_finished_spans()
        assert StatusCode.UNSET == span.status.status_code
        assert span.attributes["systemflow.paused"] is True


class TestMetrics:
    async def test_counters_and_histogram(self, metric_reader):
        """started/completed/failed counters and the duration histogram, by flow name."""
        ok = sf.Instrumented(sf.Step(inc), name="metrics_ok")
        bad = sf.Instrumented(sf.Step(fail), name="metrics_bad")

        await sf.execute(ok, 1)
        await sf.execute(ok, 1)
        with pytest.raises(sf.StepFailed):
            await sf.execute(bad, 1)

        started = _points(metric_reader, "systemflow.flow.started")
        assert 2 == started[("metrics_ok", None)]
        assert 1 == started[("metrics_bad", None)]
        completed = _points(metric_reader, "systemflow.flow.completed")
        assert 2 == completed[("metrics_ok", None)]
        assert ("metrics_bad", None) not in completed
        assert 1 == _points(metric_reader, "systemflow.flow.failed")[("metrics_bad", None)]
        durations = _points(metric_reader, "systemflow.flow.duration")
        assert 2 == durations[("metrics_ok", "completed")]
        assert 1 == durations[("metrics_bad", "failed")]


class TestInstrumentedNode:
    def test_name_is_not_a_path_segment(self):
        """Wrapping a step, named or not, never moves it: its path stays its own."""
        step = sf.Step(inc, name="charge")
        plain = sf.Sequence(step)
        wrapped = sf.Sequence(sf.Instrumented(step, name="telemetry"))
        unnamed = sf.Sequence(sf.Instrumented(sf.Step(inc)))

        assert [("charge",)] == [p for p, n in sf.walk(plain) if n is step]
        assert [("charge",)] == [p for p, n in sf.walk(wrapped) if n is step]
        assert [(), (0,), (0,)] == [p for p, _ in sf.walk(unnamed)]

    def test_repr(self):
        """repr shows the wrapped flow and the options given."""
        assert "Instrumented(Step(inc, name='charge'), recursive=True, name='t')" == repr(
            sf.Instrumented(sf.Step(inc, name="charge"), recursive=True, name="t")
        )

    async def test_nested_in_recursive_observes_once(self, spans):
        """An Instrumented inside a recursive one adds no second span for the same node."""
        flow = sf.Instrumented(sf.Sequence(sf.Instrumented(sf.Step(inc))), recursive=True)

        await sf.execute(flow, 1)

        assert ["Step inc", "Sequence"] == [s.name for s in spans.get_finished_spans()]

    async def test_output_unchanged(self):
        """Instrumenting a flow does not change what it returns."""
        flow = sf.Sequence(inc, inc)

        assert await sf.execute(flow, 1) == await sf.execute(
            sf.Instrumented(flow, recursive=True), 1
        )

    async def test_double_wrapper_observes_once(self):
        """Instrumented directly around another reports the work once, not per wrapper."""
        step = sf.Step(inc, name="count")

        for recursive in (False, True):
            flow = sf.Instrumented(sf.Instrumented(step), recursive=recursive)
            with structlog.testing.capture_logs() as logs:
                await sf.execute(flow, 1)

            assert [("systemflow.flow_started", "Step"), ("systemflow.flow_completed", "Step")] == [
                (e["event"], e["node"]) for e in logs
            ]

    async def test_skipped_step_keeps_parent_choice(self):
        """A non-critical step inside Instrumented still yields what its parent decides."""

        def boom(x: object) -> None:
            raise ConnectionError("down")

        skip = sf.Instrumented(sf.Step(boom, critical=False, inline=True))

        assert {"x": 1} == await sf.execute(sf.Assign(a=skip), {"x": 1})
        assert [None, 2] == await sf.execute(sf.Parallel(skip, lambda d: 2), {"x": 1})
        assert {"x": 1} == await sf.execute(skip, {"x": 1})
