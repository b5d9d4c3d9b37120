import asyncio

import pytest
import structlog

import systemflow as sf


class Boom(Exception):
    pass


class Ledger:
    """Records effects and undos in one ordered log."""

    def __init__(self) -> None:
        self.log: list[tuple[str, object, object]] = []

    def step(self, label: str, *, fail: bool = False, undo_fails: bool = False) -> sf.Step:
        async def do(x: int) -> int:
            if fail:
                raise Boom(f"{label} failed")
            self.log.append(("do", label, x))
            return x + 1

        async def undo(x: int, out: int) -> None:
            self.log.append(("undo", label, (x, out)))
            if undo_fails:
                raise Boom(f"undo {label} failed")

        return sf.Step(do, compensate=undo, name=label)

    def undone(self) -> list[object]:
        return [label for kind, label, _ in self.log if kind == "undo"]


class TestCompensatable:
    async def test_success_undoes_nothing(self):
        """A scope that succeeds returns its output and undoes nothing."""
        ledger = Ledger()
        flow = sf.Compensatable(ledger.step("a"), ledger.step("b"))

        assert 3 == await sf.execute(flow, 1)
        assert [] == ledger.undone()

    async def test_undo_newest_first_with_own_input_output(self):
        """On failure, completed steps are undone newest first with their input and output."""
        ledger = Ledger()
        flow = sf.Compensatable(ledger.step("a"), ledger.step("b"), ledger.step("c", fail=True))

        with pytest.raises(sf.StepFailed) as info:
            await sf.execute(flow, 1)

        assert ("c",) == info.value.path
        assert [("undo", "b", (2, 3)), ("undo", "a", (1, 2))] == [
            e for e in ledger.log if e[0] == "undo"
        ]
        assert "compensated, newest first: b, a" in info.value.__notes__

    async def test_registers_from_nested_sequence_and_parallel(self):
        """Undos register from anywhere below the scope: nested Sequence, Parallel."""
        ledger = Ledger()

        async def fail(_: object) -> None:
            raise Boom("late")

        flow = sf.Compensatable(
            sf.Sequence(ledger.step("a"), name="seq"),
            sf.Parallel(p=ledger.step("p"), q=ledger.step("q")),
            fail,
        )

        with pytest.raises(sf.StepFailed):
            await sf.execute(flow, 1)

        assert {"a", "p", "q"} == set(ledger.undone())
        assert "a" == ledger.undone()[-1]

    async def test_steps_outside_scope_not_undone(self):
        """Only steps inside the scope are undone."""
        ledger = Ledger()
        flow = ledger.step("outside") >> sf.Compensatable(
            ledger.step("inside"), ledger.step("x", fail=True)
        )

        with pytest.raises(sf.StepFailed):
            await sf.execute(flow, 1)

        assert ["inside"] == ledger.undone()

    async def test_nested_scope_success_hands_undos_to_parent(self):
        """A nested scope that succeeds hands its undos to the parent, run once each."""
        ledger = Ledger()
        inner = sf.Compensatable(ledger.step("a"), ledger.step("b"), name="inner")
        flow = sf.Compensatable(inner, ledger.step("c"), ledger.step("d", fail=True))

        with pytest.raises(sf.StepFailed):
            await sf.execute(flow, 1)

        assert ["c", "b", "a"] == ledger.undone()

    async def test_nested_scope_failure_undone_once(self):
        """A nested scope that fails undoes its own; the parent undoes the rest, once each."""
        ledger = Ledger()
        inner = sf.Compensatable(ledger.step("b"), ledger.step("x", fail=True), name="inner")
        flow = sf.Compensatable(ledger.step("a"), inner)

        with pytest.raises(sf.StepFailed) as info:
            await sf.execute(flow, 1)

        assert ["b", "a"] == ledger.undone()
        assert ("inner", "x") == info.value.path

    async def test_undo_failures_attached(self):
        """Failed undos raise CompensationFailed carrying the original and every undo error."""
        ledger = Ledger()
        flow = sf.Compensatable(
            ledger.step("a", undo_fails=True),
            ledger.step("b"),
            ledger.step("c", undo_fails=True),
            ledger.step("d", fail=True),
        )

        with pytest.raises(sf.CompensationFailed) as info:
            await sf.execute(flow, 1)

        err = info.value
        assert ["c", "b", "a"] == ledger.undone()
        assert [("c",), ("a",)] == [e.path for e in err.errors]
        assert ("d",) == err.original.path  # type: ignore[attr-defined]
        assert err.__cause__ is err.original
        assert all(isinstance(e.__cause__, Boom) for e in err.errors)
        assert 2 == sum("undo" in n for n in err.__notes__)

    async def test_cancellation_runs_undos_shielded(self):
        """A cancelled scope still runs its undos to the end, then the cancellation goes on."""
        undone: list[str] = []
        reached = asyncio.Event()

        async def reserve(x: int) -> int:
            return x

        async def release(x: int, out: int) -> None:
            await asyncio.sleep(0.01)  # the undo itself takes a while
            undone.append("release")

        async def hang(x: int) -> int:
            reached.set()
            await asyncio.Event().wait()
            return x

        flow = sf.Compensatable(sf.Step(reserve, compensate=release), hang)
        task = asyncio.create_task(sf.execute(flow, 1))
        await reached.wait()
        task.cancel()
        await asyncio.sleep(0)
        task.cancel()  # a second cancellation while undoing

        with pytest.raises(asyncio.CancelledError):
            await task
        assert ["release"] == undone

    async def test_parallel_sibling_failure_compensates_completed_branch(self):
        """When one Parallel branch fails, a completed sibling's undo runs."""
        ledger = Ledger()
        gate = asyncio.Event()

        async def fail_after(_: int) -> None:
            await gate.wait()
            raise Boom("payment down")

        async def first(x: int) -> int:
            gate.set()
            return x

        async def undo_first(x: int, out: int) -> None:
            ledger.log.append(("undo", "first", (x, out)))

        flow = sf.Compensatable(sf.Parallel(sf.Step(first, compensate=undo_first), fail_after))

        with pytest.raises(sf.StepFailed):
            await sf.execute(flow, 1)

        assert ["first"] == ledger.undone()

    async def test_pause_does_not_compensate(self):
        """FlowPaused passes through a scope without undoing anything."""
        ledger = Ledger()

        async def pause(_: object) -> None:
            raise sf.FlowPaused("wait")

        flow = sf.Compensatable(ledger.step("a"), pause)

        with pytest.raises(sf.FlowPaused):
            await sf.execute(flow, 1)

        assert [] == ledger.undone()

    async def test_compensation_logged(self):
        """Each undo logs systemflow.compensated with the step's path."""
        ledger = Ledger()
        flow = sf.Compensatable(ledger.step("a"), ledger.step("b", fail=True))

        with structlog.testing.capture_logs() as logs, pytest.raises(sf.StepFailed):
            await sf.execute(flow, 1)

        assert ["a"] == [e["step"] for e in logs if e["event"] == "systemflow.compensated"]

    async def test_sync_compensation_with_context(self):
        """A sync (ctx, input, output) undo gets the step's own context."""
        seen: list[str] = []

        def undo(ctx: sf.FlowContext, x: int, out: int) -> None:
            seen.append(ctx.idempotency_key)

        async def fail(_: object) -> None:
            raise Boom("x")

        flow = sf.Compensatable(sf.Step(lambda x: x, compensate=undo, name="s"), fail)

        with pytest.raises(sf.StepFailed):
            await sf.execute(flow, 1, context=sf.FlowContext(run_id="r"))

        assert ["r:s"] == seen

    async def test_compensate_outside_scope_is_ignored(self):
        """A compensate= step outside any scope simply runs; nothing is registered."""
        ledger = Ledger()

        assert 2 == await sf.execute(ledger.step("a"), 1)

    def test_bad_compensate_arity(self):
        """compensate must take (input, output) or (ctx, input, output)."""
        with pytest.raises(TypeError, match="compensate"):
            sf.Step(lambda x: x, compensate=lambda x: None)

    def test_repr(self):
        """repr shows the shape, including the undo function's name."""

        def charge(x: int) -> int:
            return x

        def refund(x: int, out: int) -> None:
            return None

        assert "Compensatable(Step(charge, compensate=refund), name='saga')" == repr(
            sf.Compensatable(sf.Step(charge, compensate=refund), name="saga")
        )
