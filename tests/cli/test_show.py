"""
How runs and histories are written: every kind of event, and the module's entry point.
"""

from __future__ import annotations

import datetime as dt
import importlib
import sys

import pytest

from systemflow._cli._app import Session, make_parser
from systemflow._cli._show import record_lines, timeline, waits
from systemflow.state import Event, RunRecord, RunStatus

AT = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
DUE = "2026-01-01T12:05:00+00:00"


def event(seq: int, kind: str, path, data: str | None, seconds: float = 0) -> Event:
    return Event(seq, "r", kind, path, data, AT + dt.timedelta(seconds=seconds))


class TestTimeline:
    def test_every_kind_of_event(self):
        """Each kind of event says what it means in the details column."""
        history = [
            event(1, "started", None, '{"input": {"n": 1}, "shape": []}'),
            event(2, "decision", ("pick",), "false", 0.5),
            event(3, "timer", ("wait",), f'"{DUE}"', 1),
            event(4, "paused", ("wait",), '{"wake_at": "' + DUE + '", "signals": []}', 1),
            event(5, "failed", ("pay",), '{"error": "Step pay failed: declined"}', 2),
            event(6, "compensated", ("hold",), "true", 2),
            event(7, "run_failed", ("pay",), "not json", 2),
            event(8, "step", ("long",), '"' + "x" * 200 + '"', 3),
            event(9, "abandoned", None, '{"error": "run r abandoned", "attempts": 3}', 4),
        ]  # fmt: skip

        header, *rows = timeline(history)

        details = [row[header.index("details") :] for row in rows]
        assert header.split() == ["#", "time", "event", "node", "details"]
        assert "+1.000s" in rows[2]
        assert 'input {"n": 1}' == details[0]
        assert "otherwise" == details[1]
        assert "due at 2026-01-01T12:05:00+00:00" == details[2]
        assert "waits for the timer due at 2026-01-01T12:05:00+00:00" == details[3]
        assert "Step pay failed: declined" == details[4]
        assert "undone" == details[5]
        assert '"not json"' == details[6]
        assert 100 == len(details[7])
        assert details[7].endswith("...")
        assert "run r abandoned" == details[8]

    def test_empty_history(self):
        """A run without events has no timeline."""
        assert [] == timeline([])

    def test_waits_without_a_pause(self):
        """A history without a pause waits for nothing that can be named."""
        assert "-" == waits([event(1, "started", None, "1")])
        assert "-" == waits([event(1, "paused", ("x",), "[]")])


def test_record_lines_with_a_wake_time_and_an_error():
    """A record's lines show when a paused run is due, and a failed run's error."""
    record = RunRecord(
        "r",
        "calc",
        RunStatus.FAILED,
        {"n": 1},
        error="boom",
        wake_at=AT,
        created_at=AT,
        updated_at=AT,
    )

    lines = record_lines(record)

    assert "wake at:       2026-01-01 12:00:00 UTC" in lines
    assert "error:         boom" == lines[-1]
    assert "current path:  -" in lines


@pytest.mark.parametrize(
    ("url", "where"),
    [
        ("sqlite:///x.sqlite3", "sqlite:///x.sqlite3"),
        ("postgresql+psycopg://me:secret@host/db", "postgresql+psycopg://me:***@host/db"),
        ("::not a url::", "::not a url::"),
    ],
)
def test_database_named_without_password(url, where):
    """Messages name the database by its URL, without the password."""
    session = Session(make_parser().parse_args(["--db", url, "runs", "list"]))

    assert where == session.where


def test_python_dash_m(monkeypatch, capsys):
    """python -m systemflow._cli runs the command and exits with its code."""
    monkeypatch.setattr(sys, "argv", ["systemflow", "--help"])
    monkeypatch.delitem(sys.modules, "systemflow._cli.__main__", raising=False)

    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module("systemflow._cli.__main__")

    assert 0 == exit_info.value.code
    assert "usage: systemflow" in capsys.readouterr().out
