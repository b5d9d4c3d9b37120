"""
hypothesis strategies for property tests of flows: where to fail, where to crash.

``failure_points(flow)`` draws the path of one of the tree's steps;
``crash_points(flow)`` draws a ``CrashPoint`` before or after one of its
checkpoints. One property test then covers the whole tree::

    @given(point=strategies.crash_points(flow))
    def test_crash_anywhere(point): ...

This module needs hypothesis (``pip install hypothesis``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hypothesis import strategies as st

from . import _points

if TYPE_CHECKING:
    from collections import abc

    from .._core import Flow, Path
    from ._faults import CrashPoint, When

__all__ = ["crash_points", "failure_points"]


def failure_points(
    flow: Flow[Any, Any], *, within: Path | str | None = None
) -> st.SearchStrategy[Path]:
    """
    Draw the path of one of the tree's steps or calls (at or below ``within``).

    Raises:
        ValueError: The tree has no step there.

    .. versionadded:: 0.1.0
    """
    points = _points.list_failure_points(flow, within=within)
    if not points:
        msg = f"failure_points: {flow!r} has no steps or calls" + _where(within)
        raise ValueError(msg)
    return st.sampled_from(points)


def crash_points(
    flow: Flow[Any, Any],
    *,
    within: Path | str | None = None,
    when: abc.Iterable[When] = ("before", "after"),
) -> st.SearchStrategy[CrashPoint]:
    """
    Draw a ``CrashPoint``: before or after one of the tree's checkpoints.

    Raises:
        ValueError: The tree has no checkpoint there.

    .. versionadded:: 0.1.0
    """
    points = _points.list_crash_points(flow, within=within, when=when)
    if not points:
        msg = f"crash_points: {flow!r} has no checkpoints" + _where(within)
        raise ValueError(msg)
    return st.sampled_from(points)


def _where(within: Path | str | None) -> str:
    return "" if within is None else f" at or below {within!r}"
