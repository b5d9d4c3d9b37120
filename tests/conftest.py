"""
Shared fixtures: a real OpenTelemetry SDK with in-memory exporters, and a fake clock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from hypothesis import settings
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

if TYPE_CHECKING:
    from systemflow.testing import FakeClock

# The systemflow plugin (a pytest11 entry point) would be imported before
# pytest-cov starts measuring, and with it the whole package: pyproject's
# addopts turn the entry point off (-p no:systemflow) and the plugin is loaded
# here instead, once coverage measures.
pytest_plugins = ["systemflow.testing._plugin"]

# No per-example deadline: the machines that run the tests are shared, and a
# first example also pays for cattrs building its converters. Speed is the
# benchmarks' business, not the property tests'.
settings.register_profile("systemflow", deadline=None)
settings.load_profile("systemflow")

# The global providers can be set once per process, so the whole session
# shares one SDK; the fixtures below clear what a test saw before it.
_SPANS = InMemorySpanExporter()
_METRICS = InMemoryMetricReader()
_tracer_provider = TracerProvider()
_tracer_provider.add_span_processor(SimpleSpanProcessor(_SPANS))
trace.set_tracer_provider(_tracer_provider)
metrics.set_meter_provider(MeterProvider(metric_readers=[_METRICS]))


@pytest.fixture(name="spans")
def _spans() -> InMemorySpanExporter:
    _SPANS.clear()
    return _SPANS


@pytest.fixture(name="metric_reader")
def _metric_reader() -> InMemoryMetricReader:
    _METRICS.get_metrics_data()  # drain what earlier tests recorded (delta not needed)
    return _METRICS


@pytest.fixture(name="clock")
def _clock() -> FakeClock:
    from systemflow.testing import FakeClock

    return FakeClock()
