"""
How runs and their histories are printed: text for people, JSON for programs.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import TYPE_CHECKING, Any, Final

from .._core import format_path

if TYPE_CHECKING:
    from collections import abc

    from .._core import Path
    from ..state import Event, RunRecord

_WIDTH: Final = 100  # what a timeline shows of an event's data


def say(*lines: str) -> None:
    """
    Write lines to standard output: what the command answers.
    """
    sys.stdout.write("".join(f"{line}\n" for line in lines))


def complain(text: str) -> None:
    """
    Write a line to standard error: what went wrong.
    """
    sys.stderr.write(f"{text}\n")


def _when(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _path(path: Path | None) -> list[str | int] | None:
    return None if path is None else list(path)


def record_data(record: RunRecord) -> dict[str, Any]:
    """
    A run's record as JSON data: status by value, paths as lists, times in ISO 8601.
    """
    return {
        "id": record.id,
        "name": record.name,
        "status": record.status.value,
        "input": record.input,
        "output": record.output,
        "error": record.error,
        "current_path": _path(record.current_path),
        "created_at": _when(record.created_at),
        "updated_at": _when(record.updated_at),
        "wake_at": _when(record.wake_at),
        "fingerprint": record.fingerprint,
        "version": record.version,
        "lease_owner": record.lease_owner,
        "lease_expires_at": _when(record.lease_expires_at),
    }


def _load(data: str | None) -> Any:
    if data is None:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return data  # shown as stored


def event_data(event: Event) -> dict[str, Any]:
    """
    A history event as JSON data; its data parsed.
    """
    return {
        "seq": event.seq,
        "kind": event.kind,
        "path": _path(event.path),
        "data": _load(event.data),
        "at": _when(event.at),
    }


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)


def _clip(text: str) -> str:
    return text if len(text) <= _WIDTH else text[: _WIDTH - 3] + "..."


def _time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def waits(history: abc.Sequence[Event]) -> str:
    """
    What the last pause of a run waits for: signals and a timer.
    """
    pause = next((e for e in reversed(history) if e.kind == "paused"), None)
    data = _load(pause.data) if pause is not None else None
    if not isinstance(data, dict):
        return "-"
    parts = [f"signal {name}" for name in data.get("signals") or ()]
    if data.get("wake_at"):
        parts.append(f"the timer due at {data['wake_at']}")
    return ", ".join(parts) or "-"


def _error(data: Any) -> str:
    if isinstance(data, dict) and "error" in data:
        return str(data["error"])
    return _json(data)


def _details(event: Event) -> str:
    data = _load(event.data)
    kind = event.kind
    if kind == "started" and isinstance(data, dict) and "input" in data:
        text = "input " + _json(data["input"])
    elif kind == "decision":
        text = "then" if data else "otherwise"
    elif kind == "signalled" and isinstance(data, dict):
        text = str(data.get("signal", ""))
    elif kind == "paused":
        text = "waits for " + waits([event])
    elif kind == "timer":
        text = f"due at {data}"
    elif kind in {"failed", "run_failed", "abandoned", "handed_back"}:
        text = _error(data)
    elif kind == "compensated":
        text = "undone"
    else:
        text = "" if data is None else _json(data)
    return _clip(text)


def timeline(history: abc.Sequence[Event]) -> list[str]:
    """
    A run's history, one line per event; times from the run's start.
    """
    if not history:
        return []
    start = history[0].at
    nodes = [format_path(e.path) if e.path is not None else "" for e in history]
    width = max(len("node"), *map(len, nodes))
    lines = [f"  {'#':>4}  {'time':>9}  {'event':<11}  {'node':<{width}}  details"]
    for event, node in zip(history, nodes, strict=True):
        seconds = (event.at - start).total_seconds()
        lines.append(
            f"  {event.seq:>4}  {seconds:>+8.3f}s  {event.kind:<11}  {node:<{width}}  "
            f"{_details(event)}".rstrip()
        )
    return lines


def record_lines(record: RunRecord, history: abc.Sequence[Event] | None = None) -> list[str]:
    """
    A run's record, one ``field: value`` line each; what it waits for, if paused.
    """
    current = "-" if record.current_path is None else format_path(record.current_path)
    lines = [
        f"run:           {record.id}",
        f"name:          {record.name}",
        f"status:        {record.status.value}",
        f"current path:  {current}",
    ]
    if record.status.value == "paused" and history is not None:
        lines.append(f"waiting for:   {waits(history)}")
    if record.wake_at is not None:
        lines.append(f"wake at:       {_time(record.wake_at)}")
    lines += [
        f"created:       {_time(record.created_at)}",
        f"updated:       {_time(record.updated_at)}",
        f"input:         {_json(record.input)}",
    ]
    if record.status.value == "completed":
        lines.append(f"output:        {_json(record.output)}")
    if record.error is not None:
        lines.append(f"error:         {record.error}")
    return lines


def runs_table(records: abc.Sequence[RunRecord]) -> list[str]:
    """
    Runs, one line each: id, name, status, last change, current path.
    """
    rows = [("ID", "NAME", "STATUS", "UPDATED", "PATH")] + [
        (
            r.id,
            r.name,
            r.status.value,
            _time(r.updated_at),
            "-" if r.current_path is None else format_path(r.current_path),
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4]
        for row in rows
    ]
