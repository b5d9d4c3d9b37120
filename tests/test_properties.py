"""
The laws of the combinators, stated with hypothesis.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import systemflow as sf

# A tree as plain data: ("add", k) | ("mul", k) | ("seq", [tree...])
#   | ("cond", threshold, then, otherwise | None) | ("par", [tree...])
Tree = tuple[Any, ...]

leaves = st.one_of(
    st.tuples(st.just("add"), st.integers(-5, 5)),
    st.tuples(st.just("mul"), st.integers(-3, 3)),
)
trees = st.recursive(
    leaves,
    lambda kids: st.one_of(
        st.tuples(st.just("seq"), st.lists(kids, max_size=4)),
        st.tuples(st.just("cond"), st.integers(-10, 10), kids, st.none() | kids),
        st.tuples(st.just("par"), st.lists(kids, min_size=1, max_size=4)),
    ),
    max_leaves=20,
)


def reference(tree: Tree, x: int) -> int:
    """The plain interpreter the combinators must agree with."""
    kind = tree[0]
    if kind == "add":
        return x + tree[1]
    if kind == "mul":
        return x * tree[1]
    if kind == "seq":
        for child in tree[1]:
            x = reference(child, x)
        return x
    if kind == "cond":
        _, threshold, then, otherwise = tree
        if x > threshold:
            return reference(then, x)
        return x if otherwise is None else reference(otherwise, x)
    return sum(reference(child, x) for child in tree[1])


def build(tree: Tree, *, sync: bool) -> sf.Flow[Any, Any]:
    """The same tree as systemflow nodes, with async or inline sync leaves."""
    kind = tree[0]
    if kind in {"add", "mul"}:
        k = tree[1]

        def sync_leaf(x: int) -> int:
            return x + k if kind == "add" else x * k

        async def async_leaf(x: int) -> int:
            return sync_leaf(x)

        return sf.Step(sync_leaf, inline=True) if sync else sf.Step(async_leaf)
    if kind == "seq":
        return sf.Sequence(*[build(c, sync=sync) for c in tree[1]])
    if kind == "cond":
        _, threshold, then, otherwise = tree
        return sf.Conditional(
            lambda x: x > threshold,
            build(then, sync=sync),
            None if otherwise is None else build(otherwise, sync=sync),
        )
    branches = sf.Parallel(*[build(c, sync=sync) for c in tree[1]])
    return sf.Sequence(branches, sf.Step(sum, inline=True))


class TestLaws:
    @settings(max_examples=150, deadline=None)
    @given(tree=trees, x=st.integers(-20, 20), sync=st.booleans())
    def test_tree_matches_reference_interpreter(self, tree, x, sync):
        """Any tree of pure steps computes what the plain interpreter computes."""
        assert reference(tree, x) == sf.run(build(tree, sync=sync), x)

    @settings(max_examples=100, deadline=None)
    @given(a=trees, b=trees, c=trees, x=st.integers(-20, 20))
    def test_rshift_is_associative(self, a, b, c, x):
        """(a >> b) >> c and a >> (b >> c) are the same tree and give the same result."""
        fa, fb, fc = (
            sf.Sequence(build(t, sync=True), name=n) for t, n in ((a, "a"), (b, "b"), (c, "c"))
        )

        left, right = (fa >> fb) >> fc, fa >> (fb >> fc)

        assert left == right
        assert sf.run(left, x) == sf.run(right, x)

    @settings(max_examples=100, deadline=None)
    @given(n=st.integers(1, 8), data=st.data())
    def test_compensation_undoes_exactly_completed_steps(self, n, data):
        """A saga of n steps failing at step k undoes steps k-1..0, newest first, once each."""
        k = data.draw(st.integers(0, n), label="failing step (n: none fails)")
        log: list[tuple[str, int, Any]] = []

        def make(i: int) -> sf.Step:
            async def do(x: int) -> int:
                if i == k:
                    raise ValueError(f"step {i}")
                log.append(("do", i, x))
                return x * 2 + i

            async def undo(x: int, out: int) -> None:
                log.append(("undo", i, (x, out)))

            return sf.Step(do, compensate=undo)

        flow = sf.Compensatable(*[make(i) for i in range(n)])

        if k == n:
            sf.run(flow, 1)
            assert [] == [e for e in log if e[0] == "undo"]
            return
        with pytest.raises(sf.StepFailed):
            sf.run(flow, 1)
        done = {i: x for kind, i, x in log if kind == "do"}
        expected = [("undo", i, (done[i], done[i] * 2 + i)) for i in reversed(range(k))]
        assert expected == [e for e in log if e[0] == "undo"]

    @settings(max_examples=60, deadline=None)
    @given(order=st.permutations(list(range(6))))
    def test_parallel_keeps_declaration_order(self, order):
        """Parallel returns outputs in declaration order whatever order branches finish in."""
        finished: list[int] = []

        async def scenario() -> list[int]:
            gates = [asyncio.Event() for _ in order]

            def branch(i: int) -> sf.Step:
                async def run(_: object) -> int:
                    await gates[i].wait()
                    finished.append(i)
                    return i * 10

                return sf.Step(run)

            async def release() -> None:
                for i in order:
                    gates[i].set()
                    await asyncio.sleep(0)
                    await asyncio.sleep(0)

            flow = sf.Parallel(*[branch(i) for i in range(len(order))])
            result, _ = await asyncio.gather(sf.execute(flow, None), release())
            return result

        assert [i * 10 for i in range(len(order))] == asyncio.run(scenario())
        assert list(order) == finished
