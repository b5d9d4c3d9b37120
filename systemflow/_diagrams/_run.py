"""
What a run's record and history say about each node of its tree.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from typing import TYPE_CHECKING, Any, Final, final

import attrs

from .._core import COMPENSATED, DECISION, FAILED, SIGNAL, STEP, TIMER, children_of, walk
from ..combinators import Conditional, Sleep, WaitForSignal

if TYPE_CHECKING:
    from collections import abc

    from .._core import Flow, Path
    from ..state import Event, RunRecord

COMPLETED: Final = "completed"
FAILED_STATE: Final = "failed"
COMPENSATED_STATE: Final = "compensated"
PAUSED: Final = "paused"
STATES: Final = (COMPLETED, FAILED_STATE, COMPENSATED_STATE, PAUSED)
"""Every state a node can be drawn in, in the order their classes are declared."""

# The events that say how the run itself stands, and the status each means.
_LIFE: Final = {
    "started": "running",
    "resumed": "running",
    "paused": "paused",
    "completed": "completed",
    "run_failed": "failed",
    "abandoned": "failed",
    "handed_back": "running",
    "cancelled": "cancelled",
}


@final
@attrs.frozen
class Marks:
    """
    Strictly private: the state of each path of a run, and the branches it took.

    Attributes:
        states: A state of ``STATES`` by path.
        decisions: Each decided ``Conditional``'s choice (``True``: then), by path.
    """

    states: dict[Path, str]
    decisions: dict[Path, bool]


def _load(data: str | None) -> Any:
    if data is None:
        return None
    with contextlib.suppress(ValueError):
        return json.loads(data)
    return None


def _when(text: object) -> dt.datetime | None:
    if not isinstance(text, str):
        return None
    with contextlib.suppress(ValueError):
        return dt.datetime.fromisoformat(text)
    return None


def read_run(
    flow: Flow[Any, Any], record: RunRecord | None, history: abc.Sequence[Event] | None
) -> Marks:
    """
    Read which nodes completed, failed, were undone, and where the run waits.

    A leaf completed when its output is recorded, a wait when it consumed its
    signal, a timer when the run went past it. A run that is paused waits at
    the path of its last ``paused`` event, and at every other wait or timer it
    paused for (the branches of a ``Parallel``), on the branches it took.
    """
    states, decisions, timers, pause, status = _fold(history or ())
    if record is not None:
        status = record.status.value
    waiting: set[Path] = set()
    if status == "paused":
        waiting = _waiting(flow, pause, states, decisions, timers)
    if record is not None and record.current_path is not None and pause is None:
        # A record without its history: only its current path says something.
        if status == "paused":
            waiting.add(record.current_path)
        elif status == "failed":
            states[record.current_path] = FAILED_STATE
    for path in [*timers, *decisions]:  # timers the run went past; branches it chose
        states.setdefault(path, COMPLETED)
    for path in waiting:
        states[path] = PAUSED
    return Marks(states, decisions)


def _fold(
    history: abc.Iterable[Event],
) -> tuple[
    dict[Path, str], dict[Path, bool], dict[Path, dt.datetime | None], Event | None, str | None
]:
    # One pass over the history: leaf states, decisions, timers, the last pause, the status.
    states: dict[Path, str] = {}
    decisions: dict[Path, bool] = {}
    timers: dict[Path, dt.datetime | None] = {}
    pause: Event | None = None
    status = None
    for event in history:
        path = event.path
        status = _LIFE.get(event.kind, status)
        if event.kind == "paused":
            pause = event
        if path is None:
            continue
        if event.kind in {STEP, SIGNAL}:
            states[path] = COMPLETED
        elif event.kind in {FAILED, "run_failed"}:
            states[path] = FAILED_STATE
        elif event.kind == COMPENSATED:
            states[path] = COMPENSATED_STATE
        elif event.kind == DECISION:
            decisions[path] = bool(_load(event.data))
        elif event.kind == TIMER:
            timers[path] = _when(_load(event.data))
    return states, decisions, timers, pause, status


def _waiting(
    flow: Flow[Any, Any],
    pause: Event | None,
    states: dict[Path, str],
    decisions: dict[Path, bool],
    timers: dict[Path, dt.datetime | None],
) -> set[Path]:
    # Where a paused run waits: its last pause's path, and every wait for a
    # signal it paused for, or timer not yet due at its wake time, that is on
    # a branch it took and has not completed.
    if pause is None:
        return set()
    data = _load(pause.data)
    data = data if isinstance(data, dict) else {}
    signals = set(data.get("signals") or ())
    wake_at = _when(data.get("wake_at"))
    found = set() if pause.path is None else {pause.path}
    skipped = _untaken(flow, decisions)
    for path, node in walk(flow):
        if path in states or any(path[: len(s)] == s for s in skipped):
            continue
        if isinstance(node, WaitForSignal) and node.signal in signals:
            found.add(path)
        elif isinstance(node, Sleep) and path in timers:
            deadline = timers[path]
            if deadline is not None and wake_at is not None and deadline >= wake_at:
                found.add(path)
    return found


def _untaken(flow: Flow[Any, Any], decisions: dict[Path, bool]) -> list[Path]:
    # The paths of the branches a run's decisions did not take.
    untaken: list[Path] = []
    for path, node in walk(flow):
        if isinstance(node, Conditional) and path in decisions:
            branches = children_of(node)
            index = 1 if decisions[path] else 0
            if index < len(branches):  # a true decision without otherwise skips nothing
                segment = branches[index][0]
                untaken.append(path if segment is None else (*path, segment))
    return untaken
