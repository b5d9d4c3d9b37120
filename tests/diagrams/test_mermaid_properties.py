"""
Any tree draws as a well-formed, connected diagram, with or without a run's colours.
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from mermaid_syntax import parse

import systemflow as sf
from systemflow._diagrams._text import node_id
from systemflow.state import Event, InMemoryStateStore

# A tree as plain data, like tests/test_properties.py's, with every kind of node.
Tree = tuple[Any, ...]

NAMES = st.sampled_from(
    [None, "plain", "with_underscore", "_edge_", 'q"uote', "é ✓", "a#1;", "end"]
)
leaves = st.one_of(
    st.tuples(st.just("step"), NAMES, st.booleans(), st.booleans()),
    st.tuples(st.just("call"), NAMES, st.booleans()),
    st.tuples(st.just("wait"), NAMES),
    st.tuples(st.just("sleep"), NAMES),
)
trees = st.recursive(
    leaves,
    lambda kids: st.one_of(
        st.tuples(st.just("seq"), NAMES, st.lists(kids, max_size=4)),
        st.tuples(st.just("cond"), NAMES, kids, st.none() | kids),
        st.tuples(st.just("par"), NAMES, st.lists(kids, max_size=4), st.booleans()),
        st.tuples(st.just("saga"), NAMES, st.lists(kids, max_size=3)),
        st.tuples(st.just("assign"), NAMES, st.lists(kids, min_size=1, max_size=3)),
        st.tuples(st.just("observe"), kids, st.booleans()),
    ),
    max_leaves=15,
)


def inc(x: int) -> int:
    return x + 1


def undo(x: int, out: int) -> None:
    pass


def positive(x: int) -> bool:
    return x > 0


def build(tree: Tree, counter: itertools.count) -> sf.Flow[Any, Any]:  # noqa: PLR0911
    """The tree as nodes; names get a number, so siblings never share one."""
    kind, *rest = tree
    if kind == "observe":
        return sf.Instrumented(build(rest[0], counter), recursive=rest[1])
    name = None if rest[0] is None else f"{rest[0]}{next(counter)}"
    if kind == "step":
        retry = sf.RetryPolicy() if rest[2] else None
        return sf.Step(inc, name=name, compensate=undo if rest[1] else None, retry=retry)
    if kind == "call":
        return sf.Call("svc", "do", compensate="undo" if rest[1] else None, name=name)
    if kind == "wait":
        return sf.WaitForSignal("go", name=name)
    if kind == "sleep":
        return sf.Sleep(5, name=name)
    kids = rest[1]
    if kind == "cond":
        otherwise = None if rest[2] is None else build(rest[2], counter)
        return sf.Conditional(positive, build(kids, counter), otherwise, name=name)
    flows = [build(k, counter) for k in kids]
    if kind == "par" and rest[2]:
        return sf.Parallel(**{f"b{i}": f for i, f in enumerate(flows)}, name=name)
    if kind == "assign":
        return sf.Assign(**{f"f{i}": f for i, f in enumerate(flows)}, name=name)
    return {"seq": sf.Sequence, "par": sf.Parallel, "saga": sf.Compensatable}[kind](
        *flows, name=name
    )


def check(flow: sf.Flow[Any, Any], text: str) -> None:
    diagram = parse(text)
    undos = {i for i in diagram.nodes if i.endswith("___undo")}
    main = set(diagram.nodes) - undos
    for path, node in sf.walk(flow):  # every leaf is drawn, at its path's id
        if isinstance(node, sf.Step | sf.Call | sf.WaitForSignal | sf.Sleep):
            assert node_id(path) in diagram.nodes
    assert main == diagram.reachable("n___start")
    assert main == diagram.reachable("n___end", backwards=True)
    for ident in undos:
        [edge] = [e for e in diagram.edges if e.target == ident]
        assert (True, "undo") == (edge.dashed, edge.label)


@settings(max_examples=150, deadline=None)
@given(tree=trees, durable=st.booleans(), direction=st.sampled_from(["TD", "LR"]))
def test_any_tree_draws_connected(tree, durable, direction):
    """Every leaf is drawn; every node lies on a path from start to end; undos hang off."""
    flow = build(tree, itertools.count())
    if durable:
        flow = sf.Stateful(flow, store=InMemoryStateStore(), name="run")

    check(flow, sf.to_mermaid(flow, direction=direction))


KINDS = ["step", "failed", "compensated", "decision", "signal", "timer"]


@settings(max_examples=100, deadline=None)
@given(tree=trees, data=st.data())
def test_any_history_colours_declared_nodes(tree, data):
    """Whatever a history says, the diagram stays well formed: colours name drawn nodes."""
    flow = build(tree, itertools.count())
    paths = [path for path, _ in sf.walk(flow)]
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    picked = data.draw(st.lists(st.tuples(st.sampled_from(KINDS), st.sampled_from(paths))))
    events = [Event(1, "r", "started", None, "1", at)]
    for seq, (kind, path) in enumerate(picked, start=2):
        value = {"timer": '"2026-01-01T00:00:05+00:00"', "decision": "true"}.get(kind, "1")
        events.append(Event(seq, "r", kind, path, value, at))
    pause = data.draw(st.sampled_from([None, *paths]))
    if pause is not None:
        wake = '{"wake_at": "2026-01-01T00:00:05+00:00", "signals": ["go"]}'
        events.append(Event(len(events) + 1, "r", "paused", pause, wake, at))

    check(flow, sf.to_mermaid(flow, history=events))
