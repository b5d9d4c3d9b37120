"""
The failure points and crash points of a tree: where a test can make it fail or die.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._core import walk
from ..combinators import Conditional, Sleep, WaitForSignal
from ._faults import CrashPoint, When, parse_path

if TYPE_CHECKING:
    from collections import abc

    from .._core import Flow, Path


def _within(path: Path, prefix: Path | None) -> bool:
    return prefix is None or path[: len(prefix)] == prefix


def list_failure_points(flow: Flow[Any, Any], *, within: Path | str | None = None) -> list[Path]:
    """
    The paths of a tree's steps and calls (its effects), depth first: where it can fail.

    Args:
        flow: The tree.
        within: Only the points at or below this path.

    .. versionadded:: 0.1.0
    """
    prefix = None if within is None else parse_path(within)
    found = [
        path
        for path, node in walk(flow)
        if getattr(node, "is_effect", False) and _within(path, prefix)
    ]
    return list(dict.fromkeys(found))


def list_crash_points(
    flow: Flow[Any, Any],
    *,
    within: Path | str | None = None,
    when: abc.Iterable[When] = ("before", "after"),
) -> list[CrashPoint]:
    """
    Where a durable run of a tree can crash: before and after each of its checkpoints.

    A tree checkpoints each step's and call's outcome, each ``Conditional``'s
    decision, each ``Sleep``'s deadline and each ``WaitForSignal``'s payload.
    A point on a branch a run does not take never fires: that run is not
    interrupted.

    Args:
        flow: The tree (or a ``Stateful`` around it).
        within: Only the points at or below this path.
        when: Before the checkpoint is written, after, or both.

    .. versionadded:: 0.1.0
    """
    prefix = None if within is None else parse_path(within)
    moments = tuple(when)
    paths = [
        path
        for path, node in walk(flow)
        if (
            getattr(node, "is_effect", False)
            or isinstance(node, Conditional | Sleep | WaitForSignal)
        )
        and _within(path, prefix)
    ]
    return [CrashPoint(path, when=moment) for path in dict.fromkeys(paths) for moment in moments]
