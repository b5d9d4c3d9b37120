import pytest

import systemflow as sf


async def inc(x: int) -> int:
    return x + 1


async def dbl(x: int) -> int:
    return x * 2


class TestSequence:
    async def test_feeds_outputs_forward(self):
        """Each child's output is the next child's input."""
        assert 4 == await sf.execute(sf.Sequence(inc, dbl), 1)

    async def test_rshift_is_sequence(self):
        """a >> b builds Sequence(a, b)."""
        a, b = sf.Step(inc), sf.Step(dbl)

        assert sf.Sequence(a, b) == a >> b

    def test_unnamed_sequences_flatten(self):
        """Grouping never matters: (a >> b) >> c == a >> (b >> c) == Sequence(a, b, c)."""
        a, b, c = sf.Step(inc), sf.Step(dbl), sf.Step(inc, name="c")

        assert (a >> b) >> c == a >> (b >> c) == sf.Sequence(a, b, c)

    def test_named_sequence_stays_whole(self):
        """A named sequence is a path segment of its own and does not flatten."""
        a, b = sf.Step(inc), sf.Step(dbl)
        inner = sf.Sequence(a, b, name="inner")

        outer = sf.Sequence(inner, a)

        assert (inner, a) == outer.flows
        assert [(), ("inner",), ("inner", 0), ("inner", 1), (1,)] == [p for p, _ in sf.walk(outer)]

    async def test_empty_sequence_is_identity(self):
        """An empty sequence returns its input."""
        assert "x" == await sf.execute(sf.Sequence(), "x")

    async def test_plain_callables_become_steps(self):
        """Plain functions given to a combinator are wrapped in Step."""
        flow = sf.Sequence(inc, dbl)

        assert all(isinstance(f, sf.Step) for f in flow.flows)
        assert 4 == await sf.execute(flow, 1)

    def test_non_flow_refused(self):
        """Something neither a flow nor callable is refused, naming where."""
        with pytest.raises(TypeError, match="Sequence child 1"):
            sf.Sequence(inc, 3)  # type: ignore[arg-type]

    async def test_stops_at_first_failure(self):
        """Children after a failure do not run."""
        ran = []

        async def fail(x: int) -> int:
            raise ValueError(x)

        async def never(x: int) -> int:
            ran.append(x)
            return x

        with pytest.raises(sf.StepFailed) as info:
            await sf.execute(sf.Sequence(inc, fail, never), 1)

        assert (1,) == info.value.path
        assert [] == ran

    def test_repr(self):
        """repr shows the shape."""
        assert "Sequence(Step(inc), Step(dbl), name='s')" == repr(sf.Sequence(inc, dbl, name="s"))


class TestConditional:
    async def test_then_branch(self):
        """A true predicate runs then."""
        flow = sf.Conditional(lambda x: x > 0, inc, dbl)

        assert 6 == await sf.execute(flow, 5)

    async def test_otherwise_branch(self):
        """A false predicate runs otherwise."""
        flow = sf.Conditional(lambda x: x > 0, inc, dbl)

        assert -10 == await sf.execute(flow, -5)

    async def test_no_otherwise_passes_through(self):
        """otherwise=None passes the input through."""
        assert -5 == await sf.execute(sf.Conditional(lambda x: x > 0, inc), -5)

    async def test_async_predicate_with_context(self):
        """An async (ctx, input) predicate is awaited with the context."""

        async def is_premium(ctx: sf.FlowContext, user: str) -> bool:
            return user in ctx.services["premium"]

        flow = sf.Conditional(is_premium, lambda u: f"vip {u}", lambda u: f"regular {u}")

        assert "vip ann" == await sf.execute(flow, "ann", {"premium": {"ann"}})
        assert "regular bob" == await sf.execute(flow, "bob", {"premium": {"ann"}})

    async def test_branch_paths(self):
        """Branches are segments 0 and 1 unless named."""
        seen = []

        async def where(ctx: sf.FlowContext, x: int) -> int:
            seen.append(ctx.path)
            return x

        flow = sf.Conditional(bool, where, sf.Step(where, name="no"))
        await sf.execute(flow, 1)
        await sf.execute(flow, 0)

        assert [(0,), ("no",)] == seen

    async def test_predicate_failure_names_conditional(self):
        """A failing predicate fails the conditional at its path."""

        def broken(x: int) -> bool:
            raise KeyError("tier")

        flow = sf.Sequence(sf.Conditional(broken, inc, name="tier"))

        with pytest.raises(sf.StepFailed) as info:
            await sf.execute(flow, 1)

        assert ("tier",) == info.value.path

    def test_bad_predicate_arity(self):
        """A predicate must take (input) or (ctx, input)."""
        with pytest.raises(TypeError, match="predicate"):
            sf.Conditional(lambda a, b, c: True, inc)


class TestAssign:
    async def test_dict_gets_fields(self):
        """Assign adds each output to a dict under its keyword."""

        async def reserve(order: dict[str, int]) -> str:
            return f"r-{order['qty']}"

        async def charge(order: dict[str, object]) -> str:
            return f"p-for-{order['reservation']}"

        flow = sf.Assign(reservation=reserve, payment=charge)

        assert {"qty": 2, "reservation": "r-2", "payment": "p-for-r-2"} == await sf.execute(
            flow, {"qty": 2}
        )

    async def test_attrs_and_dataclass(self):
        """attrs instances are evolved, dataclasses replaced."""
        import dataclasses

        import attrs

        @attrs.frozen
        class A:
            x: int
            y: int = 0

        @dataclasses.dataclass(frozen=True)
        class D:
            x: int
            y: int = 0

        flow = sf.Assign(y=lambda v: v.x * 3)

        assert A(2, 6) == await sf.execute(flow, A(2))
        assert D(2, 6) == await sf.execute(flow, D(2))

    async def test_unsupported_input(self):
        """An input that cannot take fields fails, naming the type and field."""
        with pytest.raises(sf.StepFailed, match="cannot set 'y' on a int"):
            await sf.execute(sf.Assign(y=inc), 1)

    def test_needs_fields(self):
        """Assign without fields is refused."""
        with pytest.raises(TypeError, match="at least one"):
            sf.Assign()

    def test_paths_are_keywords(self):
        """Each flow's path segment is its keyword."""
        flow = sf.Assign(a=inc, b=dbl)

        assert [(), ("a",), ("b",)] == [p for p, _ in sf.walk(flow)]
        assert "Assign(a=Step(inc), b=Step(dbl))" == repr(flow)
