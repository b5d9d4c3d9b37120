"""
Shared fixtures: a real OpenTelemetry SDK with in-memory exporters, and a fake clock.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

if TYPE_CHECKING:
    from systemflow.testing import FakeClock

# Pytest imports the systemflow plugin (a pytest11 entry point) before
# pytest-cov starts measuring, and importing systemflow.testing._plugin imports
# the whole package first. Forget those modules, so that the tests import them
# again while coverage measures. Nothing imported systemflow above; the plugin
# imports it only inside its fixtures, so it picks up the new modules too.
for _name in [n for n in sys.modules if n == "systemflow" or n.startswith("systemflow.")]:
    del sys.modules[_name]

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
