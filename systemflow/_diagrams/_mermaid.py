"""
to_mermaid: draw a flow tree as a Mermaid flowchart, coloured by a run if given.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import TYPE_CHECKING, Any, Final, final

from .._core import callable_name, children_of, describe, is_wrapper, title, unwrap
from ..combinators import (
    Assign,
    Call,
    Compensatable,
    Conditional,
    Parallel,
    Sequence,
    Sleep,
    Step,
    WaitForSignal,
)
from ..instrumentation import Instrumented
from ..state import Stateful
from ._run import STATES, Marks, read_run
from ._text import escape, node_id

if TYPE_CHECKING:
    from collections import abc

    from .._core import Flow, Path
    from ..state import Event, RunRecord

DIRECTIONS: Final = ("TD", "TB", "BT", "LR", "RL")

# Node shapes: Mermaid's opening and closing brackets.
_BOX: Final = ("[", "]")
_CALL: Final = ("[[", "]]")
_PAUSE: Final = ("{{", "}}")
_DECISION: Final = ("{", "}")
_BAR: Final = ("([", "])")
_TERMINAL: Final = ("((", "))")

_CLASSES: Final = {
    "completed": "fill:#d3f9d8,stroke:#2b8a3e,color:#1b4332",
    "failed": "fill:#ffe3e3,stroke:#c92a2a,color:#7f1d1d",
    "compensated": "fill:#fff3bf,stroke:#e67700,color:#7c2d12",
    "paused": "fill:#d0ebff,stroke:#1971c2,color:#0b3d91,stroke-width:3px",
}
_TAKEN: Final = "stroke:#2b8a3e,stroke-width:3px"

Exit = tuple[str, str | None]
"""Where an edge will leave from: a node id, and the edge's label."""


def _duration(seconds: float) -> str:
    if seconds < 60:  # noqa: PLR2004 -- a minute
        return f"{seconds:g}s"
    return str(dt.timedelta(seconds=seconds))


def _undo_name(node: Flow[Any, Any]) -> str | None:
    compensate = getattr(node, "compensate", None)
    if compensate is None:
        return None
    if isinstance(compensate, str) and isinstance(node, Call):
        return f"{node.service}.{compensate}"
    return callable_name(compensate)


def _heading(path: Path, text: str) -> list[str]:
    # A node's text, after the segment it has in its parent when that says
    # something more (an Assign's field, a Parallel's branch name).
    segment = path[-1] if path else None
    if isinstance(segment, str) and segment != text:
        return [f"{segment}: {text}"]
    return [text]


def _leaf_notes(node: Flow[Any, Any]) -> list[str]:
    notes = []
    retry = getattr(node, "retry", None)
    if retry is not None:
        notes.append(f"↻ up to {retry.max_attempts} attempts")
    timeout = getattr(node, "timeout", None)
    if timeout is not None:
        notes.append(f"⏱ timeout {_duration(timeout)}")
    if not getattr(node, "critical", True):
        notes.append("non-critical")
    return notes


def _box_heading(node: Flow[Any, Any], path: Path) -> str | None:
    # The title of the box a named Sequence, an Assign or a Compensatable is
    # drawn in: its name (the root's too, though not a segment), and what it is.
    mark = ""
    if isinstance(node, Sequence):
        if node.name is None:
            return None
        kind = "sequence"
    elif isinstance(node, Assign):
        kind = f"assign {', '.join(node.keys)}"
    elif isinstance(node, Compensatable):
        mark, kind = "↩ ", "compensatable (undone on failure)"
    else:
        return None
    segment = path[-1] if path else getattr(node, "name", None)
    return mark + (f"{segment}: {kind}" if isinstance(segment, str) else kind)


@final
class _Drawer:
    """
    Strictly private: writes one diagram's lines, node by node.
    """

    def __init__(self, marks: Marks | None) -> None:
        self.lines: list[str] = []
        # Written after every node: Mermaid puts a node in each subgraph whose
        # block mentions it, so an edge inside a box would pull its ends in.
        self.edges: list[str] = []
        self.nodes: set[str] = set()
        self.marks = marks
        self._depth = 1
        self._taken_exits: set[Exit] = set()
        self._taken_edges: list[int] = []
        self._extra: set[str] = set()
        self._ids: dict[str, Path] = {}

    # -- writing lines -----------------------------------------------------------

    def _line(self, text: str) -> None:
        self.lines.append("    " * self._depth + text)

    def node(self, ident: str, shape: tuple[str, str], lines: abc.Iterable[str]) -> str:
        opening, closing = shape
        self._line(f'{ident}{opening}"{escape(chr(10).join(lines))}"{closing}')
        self.nodes.add(ident)
        return ident

    def edge(self, source: Exit, target: str, *, dashed: bool = False) -> None:
        ident, label = source
        arrow = "-.->" if dashed else "-->"
        text = "" if label is None else f'|"{escape(label)}"|'
        self.edges.append(f"    {ident} {arrow}{text} {target}")
        if source in self._taken_exits:
            self._taken_edges.append(len(self.edges) - 1)

    def enter(self, incoming: list[Exit], target: str) -> None:
        for source in incoming:
            self.edge(source, target)

    @contextlib.contextmanager
    def subgraph(self, ident: str, heading: str) -> abc.Iterator[None]:
        self._line(f'subgraph {ident} ["{escape(heading)}"]')
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            self._line("end")

    def unique(self, base: str) -> str:
        # Extra nodes and subgraphs of one path (two wrappers): number the later ones.
        ident, n = base, 1
        while ident in self._extra:
            n += 1
            ident = f"{base}{n}"
        self._extra.add(ident)
        return ident

    # -- drawing nodes -----------------------------------------------------------

    def draw(
        self,
        node: Flow[Any, Any],
        path: Path,
        incoming: list[Exit],
        notes: tuple[str, ...] = (),
    ) -> list[Exit]:
        """
        Draw ``node`` at ``path``, entered from ``incoming``; return its exits.
        """
        if isinstance(node, Stateful | Instrumented):
            return self._wrapper(node, path, incoming, notes)
        heading = _box_heading(node, path)
        if isinstance(node, Sequence) and heading is None:
            return self._chain(node, path, incoming)
        if heading is not None:
            with self.subgraph(node_id(path), heading):
                return self._inside(node_id(path), node, path, incoming, notes, chain=True)
        if isinstance(node, Conditional | Parallel):
            return self._branches(node, path, incoming)
        if children_of(node):  # a node of the user's own
            return self._other(node, path, incoming)
        return self._leaf(node, path, incoming, notes)

    def _wrapper(
        self,
        node: Stateful | Instrumented,
        path: Path,
        incoming: list[Exit],
        notes: tuple[str, ...],
    ) -> list[Exit]:
        if isinstance(node, Stateful):
            ident = self.unique(node_id(path, "durable"))
            heading = f"durable: {node.name}"
        else:
            mark = "◉ instrumented" + (", every node below" if node.recursive else "")
            if not children_of(unwrap(node.flow)):  # a leaf: say it on the leaf
                return self.draw(node.flow, path, incoming, (*notes, mark))
            ident = self.unique(node_id(path, "instrumented"))
            heading = f"{mark}: {describe(node)}"
        with self.subgraph(ident, heading):
            return self._inside(ident, node.flow, path, incoming, notes)

    def _chain(self, node: Flow[Any, Any], path: Path, incoming: list[Exit]) -> list[Exit]:
        # Children one after the other (an unnamed Sequence is only that).
        exits = incoming
        for segment, child in children_of(node):
            exits = self.draw(child, path if segment is None else (*path, segment), exits)
        return exits

    def _inside(
        self,
        ident: str,
        node: Flow[Any, Any],
        path: Path,
        incoming: list[Exit],
        notes: tuple[str, ...],
        *,
        chain: bool = False,
    ) -> list[Exit]:
        # The body of a subgraph; an empty one gets a node, so it is drawn.
        before = len(self.nodes)
        exits = (
            self._chain(node, path, incoming) if chain else self.draw(node, path, incoming, notes)
        )
        if len(self.nodes) == before:
            empty = self.node(self.unique(f"{ident}___empty"), _BAR, ["nothing to do"])
            self.enter(exits, empty)
            exits = [(empty, None)]
        return exits

    def _leaf(
        self, node: Flow[Any, Any], path: Path, incoming: list[Exit], notes: tuple[str, ...]
    ) -> list[Exit]:
        ident = node_id(path)
        shape = _BOX
        name = getattr(node, "name", None)
        if isinstance(node, WaitForSignal):
            shape = _PAUSE
            wait = f"⏸ wait for signal {node.signal}"
            lines = [wait] if name is None else [*_heading(path, name), wait]
        elif isinstance(node, Sleep):
            shape = _PAUSE
            wait = f"⏸ sleep {_duration(node.duration.total_seconds())}"
            lines = [wait] if name is None else [*_heading(path, name), wait]
        else:
            if isinstance(node, Call):
                shape = _CALL
            lines = _heading(path, describe(node))
            if isinstance(node, Step | Call) and name is not None and name != node.label:
                lines.append(f"({node.label})")
            elif not isinstance(node, Step | Call):
                lines = _heading(path, title(node, quote=False))
        self.node(ident, shape, [*lines, *_leaf_notes(node), *notes])
        self._ids[ident] = path
        self.enter(incoming, ident)
        undo = _undo_name(node)
        if undo is not None:
            undo_id = self.node(node_id(path, "undo"), _BOX, [f"↩ undo: {undo}"])
            self._ids[undo_id] = path
            self.edge((ident, "undo"), undo_id, dashed=True)
        return [(ident, None)]

    def _branches(
        self, node: Conditional | Parallel, path: Path, incoming: list[Exit]
    ) -> list[Exit]:
        if isinstance(node, Parallel):
            return self._parallel(node, path, incoming)
        return self._conditional(node, path, incoming)

    def _conditional(self, node: Conditional, path: Path, incoming: list[Exit]) -> list[Exit]:
        ident = node_id(path)
        question = f"{callable_name(node.predicate)}?"
        self.node(ident, _DECISION, _heading(path, question))
        self._ids[ident] = path
        self.enter(incoming, ident)
        if self.marks is not None and path in self.marks.decisions:
            self._taken_exits.add((ident, "yes" if self.marks.decisions[path] else "no"))
        exits: list[Exit] = []
        for (segment, branch), label in zip(children_of(node), ("yes", "no"), strict=False):
            branch_path = path if segment is None else (*path, segment)
            exits += self.draw(branch, branch_path, [(ident, label)])
        if node.otherwise is None:  # a false predicate passes the input on
            exits.append((ident, "no"))
        return exits

    def _parallel(self, node: Parallel, path: Path, incoming: list[Exit]) -> list[Exit]:
        fork = node_id(path)
        lines = _heading(path, describe(node) if node.name else "parallel")
        if node.name:
            lines.append("parallel")
        if node.max_concurrency is not None:
            lines.append(f"at most {node.max_concurrency} at once")
        self.node(fork, _BAR, lines)
        self.enter(incoming, fork)
        exits: list[Exit] = []
        for segment, child in children_of(node):
            label = segment if isinstance(segment, str) else None
            child_path = path if segment is None else (*path, segment)
            exits += self.draw(child, child_path, [(fork, label)])
        join = self.node(node_id(path, "join"), _BAR, ["join"])
        self.enter(exits or [(fork, None)], join)  # no branches: straight on
        return [(join, None)]

    def _other(self, node: Flow[Any, Any], path: Path, incoming: list[Exit]) -> list[Exit]:
        # A node of the user's own with children: its children in order, in a box.
        ident = self.unique(node_id(path, "node")) if is_wrapper(node) else node_id(path)
        with self.subgraph(ident, _heading(path, title(node, quote=False))[0]):
            return self._inside(ident, node, path, incoming, (), chain=True)

    # -- colours -------------------------------------------------------------------

    def styles(self) -> list[str]:
        """
        Return the classes of the run's states, and the style of the branches it took.
        """
        if self.marks is None:
            return []
        lines = [f"classDef {name} {_CLASSES[name]}" for name in STATES]
        by_state: dict[str, list[str]] = {}
        for ident, path in self._ids.items():
            state = self.marks.states.get(path)
            if state is None or (ident.endswith("___undo") and state != "compensated"):
                continue
            by_state.setdefault(state, []).append(ident)
        lines += [
            f"class {','.join(sorted(by_state[name]))} {name}"
            for name in STATES
            if name in by_state
        ]
        if self._taken_edges:
            lines.append(f"linkStyle {','.join(map(str, self._taken_edges))} {_TAKEN}")
        return ["    " + line for line in lines]


def to_mermaid(
    flow: Flow[Any, Any],
    *,
    record: RunRecord | None = None,
    history: abc.Sequence[Event] | None = None,
    direction: str = "TD",
) -> str:
    """
    Draw a flow tree as a Mermaid flowchart; colour it by a run, if given one.

    A ``Sequence`` is a chain of nodes (a named one, a box around it), a
    ``Conditional`` a decision with ``yes`` and ``no`` edges, a ``Parallel`` a
    fork and a join, an ``Assign`` a box of its fields' flows, a
    ``Compensatable`` a box whose steps show their undo on a dashed edge.
    ``Call`` is drawn as a subroutine, ``WaitForSignal`` and ``Sleep`` as
    hexagons marked ⏸; retries, timeouts and non-critical leaves are noted on
    the leaf. ``Stateful`` draws a box marked "durable" around its flow,
    ``Instrumented`` one marked ◉ (on a leaf, a note). Node ids are made from
    paths: the same node has the same id in every diagram of the tree.

    Given a run's ``record`` and ``history`` (``await store.history(run_id)``),
    the nodes are coloured with the classes ``completed``, ``failed``,
    ``compensated`` and ``paused`` (where a paused run waits), and the
    branches the run's decisions took are drawn thick.

    Args:
        flow: The tree's root (a ``Stateful`` too).
        record: The run to colour the diagram by.
        history: Its events, oldest first.
        direction: ``TD`` (top down, also ``TB``), ``BT``, ``LR`` or ``RL``.

    Returns:
        The diagram's text, starting with ``flowchart``, ending with a newline.

    Raises:
        ValueError: ``direction`` is none of those.

    .. versionadded:: 0.1.0
    """
    if direction not in DIRECTIONS:
        msg = f"to_mermaid: direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}"
        raise ValueError(msg)
    marks = None if record is None and history is None else read_run(flow, record, history)
    drawer = _Drawer(marks)
    start = drawer.node(node_id((), "start"), _TERMINAL, ["start"])
    exits = drawer.draw(flow, (), [(start, None)])
    drawer.enter(exits, drawer.node(node_id((), "end"), _TERMINAL, ["end"]))
    lines = [f"flowchart {direction}", *drawer.lines, *drawer.edges, *drawer.styles()]
    return "\n".join(lines) + "\n"
