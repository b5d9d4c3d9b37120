import asyncio

import pytest

import systemflow as sf


def delayed(seconds: float, value: object, log: list[object] | None = None) -> sf.Step:
    async def run(_: object) -> object:
        await asyncio.sleep(seconds)
        if log is not None:
            log.append(value)
        return value

    return sf.Step(run)


class Boom(Exception):
    pass


class TestParallel:
    async def test_list_in_declaration_order(self):
        """Positional branches return a list in declaration order, not finish order."""
        finished: list[object] = []
        flow = sf.Parallel(
            delayed(0.03, "a", finished), delayed(0.0, "b", finished), delayed(0.01, "c", finished)
        )

        assert ["a", "b", "c"] == await sf.execute(flow, None)
        assert ["b", "c", "a"] == finished

    async def test_named_branches_give_dict(self):
        """Keyword branches return a dict by name."""
        flow = sf.Parallel(stock=lambda x: x + 1, price=lambda x: x * 10)

        assert {"stock": 3, "price": 20} == await sf.execute(flow, 2)

    async def test_branches_run_concurrently(self):
        """Branches overlap in time."""
        running = 0
        peak = 0

        async def track(_: object) -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.01)
            running -= 1

        await sf.execute(sf.Parallel(*[track] * 5), None)

        assert 5 == peak

    async def test_max_concurrency(self):
        """max_concurrency bounds how many branches run at once."""
        running = 0
        peak = 0

        async def track(_: object) -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.005)
            running -= 1

        await sf.execute(sf.Parallel(*[track] * 8, max_concurrency=3), None)

        assert 3 == peak

    async def test_first_failure_cancels_and_awaits_siblings(self):
        """The first failure cancels the other branches and waits for their cleanup."""
        cleaned: list[str] = []

        async def slow(_: object) -> None:
            try:
                await asyncio.sleep(10)
            finally:
                cleaned.append("slow")

        async def fail(_: object) -> None:
            await asyncio.sleep(0)
            raise Boom("card declined")

        flow = sf.Parallel(wait=slow, pay=fail)

        with pytest.raises(sf.StepFailed) as info:
            await sf.execute(flow, None)

        assert ("pay",) == info.value.path
        assert ["slow"] == cleaned
        assert isinstance(info.value.__cause__, Boom)

    async def test_simultaneous_failures_are_noted(self):
        """Failures that happen together: the first is raised, the others noted."""

        async def fail_a(_: object) -> None:
            raise Boom("a")

        async def fail_b(_: object) -> None:
            raise Boom("b")

        with pytest.raises(sf.StepFailed) as info:
            await sf.execute(sf.Parallel(fail_a, fail_b), None)

        assert (0,) == info.value.path
        assert any("branch 1 failed at the same time" in n for n in info.value.__notes__)

    async def test_pause_lets_siblings_finish(self):
        """A paused branch does not cancel the others; the Parallel pauses after them."""
        done: list[str] = []

        async def wait(_: object) -> None:
            raise sf.FlowPaused("waiting for approval")

        async def work(_: object) -> None:
            await asyncio.sleep(0.01)
            done.append("work")

        with pytest.raises(sf.FlowPaused):
            await sf.execute(sf.Parallel(wait, work), None)

        assert ["work"] == done

    async def test_cancelled_from_outside(self):
        """Cancelling the caller cancels every branch; nothing outlives the call."""
        started = asyncio.Event()
        cancelled: list[int] = []

        async def hang(_: object) -> None:
            started.set()
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.append(1)
                raise

        task = asyncio.create_task(sf.execute(sf.Parallel(hang, hang), None))
        await started.wait()
        await asyncio.sleep(0)
        task.cancel()

        with pytest.raises(asyncio.CancelledError):
            await task
        assert [1, 1] == cancelled

    def test_mixed_forms_refused(self):
        """Positional and keyword branches cannot be mixed."""
        with pytest.raises(TypeError, match="not both"):
            sf.Parallel(lambda x: x, b=lambda x: x)

    @pytest.mark.parametrize("bad", [0, -2])
    def test_bad_max_concurrency(self, bad):
        """max_concurrency must be positive."""
        with pytest.raises(ValueError, match="max_concurrency"):
            sf.Parallel(lambda x: x, max_concurrency=bad)

    async def test_empty(self):
        """No branches give an empty list."""
        assert [] == await sf.execute(sf.Parallel(), 1)

    def test_repr(self):
        """repr shows branches and options."""

        async def a(x: int) -> int:
            return x

        assert "Parallel(x=Step(a), y=Step(a), max_concurrency=2)" == repr(
            sf.Parallel(x=a, y=a, max_concurrency=2)
        )
