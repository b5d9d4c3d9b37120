import asyncio

import pytest

import systemflow as sf


async def inc(x: int) -> int:
    return x + 1


class Boom(Exception):
    pass


class TestExecute:
    async def test_runs_tree(self):
        """execute runs a tree on its input and returns the output."""
        assert 3 == await sf.execute(sf.Step(inc) >> sf.Step(inc), 1)

    def test_run_from_sync_code(self):
        """run is execute for synchronous callers."""
        assert 2 == sf.run(sf.Step(inc), 1)

    async def test_services_reach_steps(self):
        """Steps find the services given to execute in ctx.services."""

        async def read(ctx: sf.FlowContext, _: None) -> str:
            return ctx.services["greeting"]  # type: ignore[no-any-return]

        assert "hi" == await sf.execute(sf.Step(read), None, {"greeting": "hi"})

    async def test_context_and_services_conflict(self):
        """Giving services twice is refused."""
        with pytest.raises(TypeError, match="not both"):
            await sf.execute(sf.Step(inc), 1, {"a": 1}, context=sf.FlowContext())

    async def test_error_names_path_and_run(self):
        """A failing step raises StepFailed with its path and the run id, cause chained."""

        async def fail(_: int) -> int:
            raise Boom("no stock")

        flow = sf.Sequence(sf.Step(inc), sf.Sequence(sf.Step(fail, name="reserve"), name="order"))
        ctx = sf.FlowContext(run_id="run-1")

        with pytest.raises(sf.StepFailed) as info:
            await sf.execute(flow, 1, context=ctx)

        assert ("order", "reserve") == info.value.path
        assert "run-1" == info.value.run_id
        assert isinstance(info.value.__cause__, Boom)
        assert "order/reserve" in str(info.value)
        assert "no stock" in str(info.value)

    async def test_custom_flow_protocol(self):
        """Any object with execute(ctx, input) is a flow and can be a child."""

        class Double:
            async def execute(self, ctx: sf.FlowContext, value: int) -> int:
                return value * 2

        assert isinstance(Double(), sf.Flow)
        assert 3 == await sf.execute(sf.Sequence(Double(), inc), 1)

    async def test_cancellation_is_plain_asyncio(self):
        """Cancelling the task running a flow raises CancelledError, not a FlowError."""
        started = asyncio.Event()

        async def wait(_: int) -> int:
            started.set()
            await asyncio.Event().wait()
            return 0

        task = asyncio.create_task(sf.execute(sf.Step(wait), 1))
        await started.wait()
        task.cancel()

        with pytest.raises(asyncio.CancelledError):
            await task


class TestWalk:
    def test_paths_depth_first(self):
        """walk yields every node with its path, parents first, in order."""
        a, b, c = sf.Step(inc, name="a"), sf.Step(inc), sf.Step(inc, name="c")
        par = sf.Parallel(x=b, y=c)
        flow = sf.Sequence(a, par, sf.Conditional(bool, a))

        got = [(path, type(node).__name__) for path, node in sf.walk(flow)]

        assert [
            ((), "Sequence"),
            (("a",), "Step"),
            ((1,), "Parallel"),
            ((1, "x"), "Step"),
            ((1, "y"), "Step"),
            ((2,), "Conditional"),
            ((2, "a"), "Step"),
        ] == got

    def test_instrumented_shares_path(self):
        """Instrumented adds no segment: it and what it wraps share one path."""
        flow = sf.Sequence(sf.Instrumented(sf.Step(inc, name="charge")))

        paths = [path for path, _ in sf.walk(flow)]

        assert [(), ("charge",), ("charge",)] == paths

    def test_leaf_has_no_children(self):
        """A leaf walks to itself only."""
        leaf = sf.Step(inc)

        assert [((), leaf)] == list(sf.walk(leaf))

    def test_duplicate_sibling_names_refused(self):
        """Two siblings with one name would share a path: refused at construction."""
        with pytest.raises(sf.FlowDefinitionError, match="both named 'charge'"):
            sf.Sequence(sf.Step(inc, name="charge"), sf.Step(inc, name="charge"))

    @pytest.mark.parametrize("bad", ["", "a/b", "12"])
    def test_unusable_names_refused(self, bad):
        """Names that cannot be path segments are refused, naming the node."""
        with pytest.raises(sf.FlowDefinitionError, match="cannot be a path segment"):
            sf.Step(inc, name=bad)

    def test_non_string_name_refused(self):
        """A name must be a string."""
        with pytest.raises(sf.FlowDefinitionError, match="must be a str"):
            sf.Sequence(inc, name=3)  # type: ignore[arg-type]
