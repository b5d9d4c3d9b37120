import asyncio
import datetime as dt
import functools
import threading

import pytest
import structlog

import systemflow as sf


class Boom(Exception):
    pass


class TestStepCallingForms:
    async def test_async_input_only(self):
        """An async (input) function is awaited with the input."""

        async def inc(x: int) -> int:
            return x + 1

        assert 2 == await sf.execute(sf.Step(inc), 1)

    async def test_async_with_context(self):
        """An async (ctx, input) function gets the node's context."""

        async def where(ctx: sf.FlowContext, x: int) -> tuple[object, ...]:
            return (ctx.path, x)

        flow = sf.Sequence(sf.Step(where, name="here"))

        assert (("here",), 1) == await sf.execute(flow, 1)

    async def test_sync_runs_in_thread(self):
        """A sync function runs in a worker thread by default."""
        loop_thread = threading.get_ident()

        def ident(_: object) -> int:
            return threading.get_ident()

        assert loop_thread != await sf.execute(sf.Step(ident), None)

    async def test_sync_inline_runs_on_loop(self):
        """inline=True runs a sync function on the event loop's thread."""
        loop_thread = threading.get_ident()

        def ident(_: object) -> int:
            return threading.get_ident()

        assert loop_thread == await sf.execute(sf.Step(ident, inline=True), None)

    async def test_sync_with_context(self):
        """A sync (ctx, input) function gets the context too."""

        def key(ctx: sf.FlowContext, _: object) -> str:
            return ctx.idempotency_key

        ctx = sf.FlowContext(run_id="r")

        assert "r:<root>" == await sf.execute(sf.Step(key), None, context=ctx)

    async def test_sync_returning_awaitable_is_awaited(self):
        """A sync function that returns an awaitable has it awaited."""

        async def later(x: int) -> int:
            return x * 10

        def kick(x: int) -> object:
            return later(x)

        assert 20 == await sf.execute(sf.Step(kick, inline=True), 2)
        assert 30 == await sf.execute(sf.Step(kick), 3)

    async def test_partial_and_callable_object(self):
        """Partials and objects with an async __call__ are classified correctly."""

        async def add(a: int, x: int) -> int:
            return a + x

        class Adder:
            async def __call__(self, x: int) -> int:
                return x + 100

        flow = sf.Step(functools.partial(add, 5)) >> sf.Step(Adder())

        assert 106 == await sf.execute(flow, 1)

    def test_wrong_arity_refused(self):
        """A function of three required arguments fits no calling form."""

        def three(a: int, b: int, c: int) -> int:
            return a

        with pytest.raises(TypeError, match=r"three.*expected \(input\) or \(ctx, input\)"):
            sf.Step(three)

    def test_not_callable_refused(self):
        """A step needs a callable."""
        with pytest.raises(sf.FlowDefinitionError, match="expected a function, got int 42"):
            sf.Step(42)  # type: ignore[arg-type]

    def test_flow_as_function_refused(self):
        """Wrapping a flow in a Step is refused with a hint."""

        async def f(x: int) -> int:
            return x

        with pytest.raises(sf.FlowDefinitionError, match="expected a function, got the flow Step"):
            sf.Step(sf.Step(f))  # type: ignore[call-overload]

    def test_keyword_only_parameter_refused(self):
        """A function with a required keyword-only parameter cannot be a step."""

        def f(x: int, *, flag: bool) -> int:
            return x

        with pytest.raises(sf.FlowDefinitionError, match="required keyword-only parameter"):
            sf.Step(f)

    def test_rrshift_wraps_function(self):
        """fn >> node makes fn a Step: Sequence(fn, node)."""

        def first(x: int) -> int:
            return x

        async def second(x: int) -> int:
            return x

        assert sf.Sequence(first, second) == first >> sf.Step(second)

    def test_step_decorator_forms(self):
        """@step and @step(...) both make a Step."""

        @sf.step
        async def a(x: int) -> int:
            return x

        @sf.step(name="b", inline=True)
        def b(x: int) -> int:
            return x

        assert isinstance(a, sf.Step)
        assert ("b", True) == (b.name, b.inline)

    def test_repr_shows_shape(self):
        """repr shows the function's name and options, never an address."""

        async def charge(x: int) -> int:
            return x

        assert "Step(charge)" == repr(sf.Step(charge))
        assert "Step(charge, timeout=2.0, name='pay')" == repr(
            sf.Step(charge, timeout=2, name="pay")
        )

    def test_equality_structural(self):
        """Steps of the same function and options are equal."""

        async def f(x: int) -> int:
            return x

        assert sf.Step(f, name="x") == sf.Step(f, name="x")
        assert sf.Step(f, name="x") != sf.Step(f, name="y")


class TestRetry:
    async def test_retries_until_success(self, clock):
        """A failing step is retried with exponential backoff on the context's clock."""
        attempts = []

        async def flaky(x: int) -> int:
            attempts.append(x)
            if len(attempts) < 3:
                raise Boom("gateway busy")
            return x

        policy = sf.RetryPolicy(max_attempts=5, initial_delay=1.0, backoff=2.0, jitter=0)
        ctx = sf.FlowContext(clock=clock)

        assert 7 == await sf.execute(sf.Step(flaky, retry=policy), 7, context=ctx)
        assert 3 == len(attempts)
        assert [1.0, 2.0] == clock.sleeps

    async def test_gives_up_after_max_attempts(self, clock):
        """After max_attempts the last error is raised, with a note saying so."""
        calls = []

        async def down(x: int) -> int:
            calls.append(x)
            raise Boom("down")

        policy = sf.RetryPolicy(max_attempts=3, initial_delay=0.5, jitter=0)
        ctx = sf.FlowContext(clock=clock)

        with pytest.raises(sf.StepFailed) as info:
            await sf.execute(sf.Step(down, retry=policy), 1, context=ctx)

        assert 3 == len(calls)
        assert isinstance(info.value.__cause__, Boom)
        assert "gave up after 3 attempts (RetryPolicy)" in info.value.__cause__.__notes__

    async def test_retry_on_filters(self, clock):
        """Only exceptions matching retry_on are retried."""
        calls = []

        async def bad(x: int) -> int:
            calls.append(x)
            raise ValueError("bad input")

        policy = sf.RetryPolicy(retry_on=(ConnectionError,), initial_delay=0)
        ctx = sf.FlowContext(clock=clock)

        with pytest.raises(sf.StepFailed):
            await sf.execute(sf.Step(bad, retry=policy), 1, context=ctx)

        assert 1 == len(calls)

    async def test_retry_on_predicate(self, clock):
        """retry_on may be a predicate on the exception."""
        calls = []

        async def bad(x: int) -> int:
            calls.append(x)
            raise Boom("retryable" if len(calls) < 2 else "fatal")

        policy = sf.RetryPolicy(max_attempts=9, retry_on=lambda e: "retryable" in str(e))
        ctx = sf.FlowContext(clock=clock)

        with pytest.raises(sf.StepFailed, match="fatal"):
            await sf.execute(sf.Step(bad, retry=policy), 1, context=ctx)

        assert 2 == len(calls)

    async def test_attempts_are_logged(self, clock):
        """Each scheduled retry logs systemflow.retry_scheduled with the attempt."""
        calls = []

        async def flaky(x: int) -> int:
            calls.append(x)
            if len(calls) < 2:
                raise Boom("once")
            return x

        ctx = sf.FlowContext(clock=clock, run_id="r")
        with structlog.testing.capture_logs() as logs:
            await sf.execute(sf.Step(flaky, retry=sf.RetryPolicy(jitter=0)), 1, context=ctx)

        events = [e for e in logs if e["event"] == "systemflow.retry_scheduled"]
        assert 1 == len(events)
        assert (1, 3, 0.1, "r") == (
            events[0]["attempt"],
            events[0]["max_attempts"],
            events[0]["delay"],
            events[0]["run_id"],
        )

    def test_delay_grows_and_caps(self):
        """Delays grow by backoff and never pass max_delay; jitter stays within bounds."""
        plain = sf.RetryPolicy(initial_delay=1, backoff=3, max_delay=10, jitter=0)
        jittered = sf.RetryPolicy(initial_delay=1, backoff=2, max_delay=100, jitter=0.5)

        assert [1, 3, 9, 10, 10] == [plain.delay(n) for n in range(1, 6)]
        assert all(4 <= jittered.delay(3) <= 6 for _ in range(100))

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"max_attempts": 0}, "max_attempts"),
            ({"initial_delay": -1}, "initial_delay"),
            ({"backoff": 0.5}, "backoff"),
            ({"max_delay": -1}, "max_delay"),
            ({"jitter": -0.1}, "jitter"),
        ],
    )
    def test_bad_policy_refused(self, kwargs, field):
        """Nonsense settings are refused, naming the field."""
        with pytest.raises(ValueError, match=field):
            sf.RetryPolicy(**kwargs)

    def test_retry_on_list_accepted(self):
        """retry_on given as a list of types is kept as a tuple."""
        assert (ValueError, KeyError) == sf.RetryPolicy(retry_on=[ValueError, KeyError]).retry_on

    def test_retry_on_non_types_refused(self):
        """retry_on must hold exception types, or be a predicate."""
        with pytest.raises(sf.FlowDefinitionError, match="retry_on"):
            sf.RetryPolicy(retry_on=["ValueError"])  # type: ignore[arg-type]
        with pytest.raises(sf.FlowDefinitionError, match="retry_on"):
            sf.RetryPolicy(retry_on=3)  # type: ignore[arg-type]

    def test_retry_must_be_policy(self):
        """retry= takes a RetryPolicy."""

        async def f(x: int) -> int:
            return x

        with pytest.raises(TypeError, match="RetryPolicy"):
            sf.Step(f, retry=3)  # type: ignore[arg-type]


class TestTimeout:
    async def test_timeout_raises_flow_timeout(self):
        """A step past its timeout fails with FlowTimeout naming path and limit."""

        async def slow(x: int) -> int:
            await asyncio.Event().wait()
            return x

        flow = sf.Sequence(sf.Step(slow, timeout=0.01, name="label"))

        with pytest.raises(sf.FlowTimeout) as info:
            await sf.execute(flow, 1)

        assert ("label",) == info.value.path
        assert 0.01 == info.value.timeout
        assert isinstance(info.value, TimeoutError)

    async def test_timeout_timedelta(self):
        """timeout= also takes a timedelta."""

        async def f(x: int) -> int:
            return x

        step = sf.Step(f, timeout=dt.timedelta(seconds=3))

        assert 3.0 == step.timeout
        assert 1 == await sf.execute(step, 1)

    async def test_own_timeout_error_is_not_ours(self):
        """A TimeoutError the function raises itself is not reported as FlowTimeout."""

        async def f(x: int) -> int:
            raise TimeoutError("upstream")

        with pytest.raises(sf.StepFailed) as info:
            await sf.execute(sf.Step(f, timeout=5), 1)

        assert not isinstance(info.value, sf.FlowTimeout)
        assert isinstance(info.value.__cause__, TimeoutError)

    async def test_timeouts_are_retried(self, clock):
        """A timed-out attempt is retried like any failure."""
        calls = []

        async def slow_once(x: int) -> int:
            calls.append(x)
            if len(calls) == 1:
                await asyncio.Event().wait()
            return x

        step = sf.Step(slow_once, timeout=0.01, retry=sf.RetryPolicy(initial_delay=0))

        assert 5 == await sf.execute(step, 5, context=sf.FlowContext(clock=clock))
        assert 2 == len(calls)

    @pytest.mark.parametrize("bad", [0, -1])
    def test_bad_timeout_refused(self, bad):
        """A timeout must be positive."""

        async def f(x: int) -> int:
            return x

        with pytest.raises(ValueError, match="timeout"):
            sf.Step(f, timeout=bad)


class TestNonCritical:
    async def test_failure_logged_and_input_passed(self):
        """A non-critical step's failure is logged and its input passes through."""

        async def publish(x: int) -> int:
            raise Boom("broker down")

        async def after(x: int) -> int:
            return x * 10

        flow = sf.Step(publish, critical=False, name="publish") >> after
        with structlog.testing.capture_logs() as logs:
            out = await sf.execute(flow, 4)

        assert 40 == out
        ignored = [e for e in logs if e["event"] == "systemflow.step_failed_ignored"]
        assert 1 == len(ignored)
        assert "publish" == ignored[0]["path"]
        assert "broker down" in ignored[0]["error"]

    async def test_success_returns_output(self):
        """A non-critical step that succeeds returns its own output."""

        async def f(x: int) -> int:
            return x + 1

        assert 2 == await sf.execute(sf.Step(f, critical=False), 1)

    async def test_in_assign_leaves_field_unset(self):
        """A failed non-critical flow in Assign sets nothing (not the whole input)."""

        async def publish(x: object) -> str:
            raise Boom("broker down")

        flow = sf.Assign(event=sf.Step(publish, critical=False), ok=lambda v: "yes")

        assert {"order": 1, "ok": "yes"} == await sf.execute(flow, {"order": 1})

    async def test_in_parallel_yields_none(self):
        """A failed non-critical Parallel branch yields None."""

        async def publish(x: object) -> str:
            raise Boom("broker down")

        flow = sf.Parallel(a=sf.Step(publish, critical=False), b=lambda v: "ok")

        assert {"a": None, "b": "ok"} == await sf.execute(flow, {"order": 1})


class FakePayments:
    def __init__(self) -> None:
        self.log: list[tuple[str, object]] = []

    async def charge(self, amount: int) -> str:
        self.log.append(("charge", amount))
        return f"p-{amount}"

    async def refund(self, payment_id: str) -> None:
        self.log.append(("refund", payment_id))

    def lookup(self, amount: int) -> int:
        return amount * 2


class TestCall:
    async def test_calls_service_method(self):
        """Call awaits ctx.services[service].<method>(input)."""
        payments = FakePayments()

        out = await sf.execute(sf.Call("payments", "charge"), 5, {"payments": payments})

        assert "p-5" == out
        assert [("charge", 5)] == payments.log

    async def test_sync_method(self):
        """A plain method is called too (in a thread, or inline)."""
        services = {"payments": FakePayments()}

        assert 10 == await sf.execute(sf.Call("payments", "lookup"), 5, services)
        assert 10 == await sf.execute(sf.Call("payments", "lookup", inline=True), 5, services)

    async def test_missing_service(self):
        """A missing service fails naming the service and the known ones."""
        with pytest.raises(sf.StepFailed, match=r"no service named 'payments'.*known: inventory"):
            await sf.execute(sf.Call("payments", "charge"), 5, {"inventory": object()})

    async def test_missing_service_not_retried(self, clock):
        """A missing service is a configuration error: raised at once, never retried."""
        call = sf.Call("payments", "charge", retry=sf.RetryPolicy(max_attempts=5))

        with pytest.raises(sf.StepFailed, match="no service named"):
            await sf.execute(call, 5, context=sf.FlowContext(clock=clock))

        assert [] == clock.sleeps

    async def test_missing_method(self):
        """A missing method fails naming the service and method."""
        with pytest.raises(sf.StepFailed, match="has no method 'chrage'"):
            await sf.execute(sf.Call("payments", "chrage"), 5, {"payments": FakePayments()})

    async def test_compensate_by_method_name(self):
        """compensate='refund' calls the same service's refund with the call's output."""
        payments = FakePayments()

        async def fail(_: object) -> None:
            raise Boom("shipping")

        flow = sf.Compensatable(sf.Call("payments", "charge", compensate="refund"), fail)

        with pytest.raises(sf.StepFailed):
            await sf.execute(flow, 7, {"payments": payments})

        assert [("charge", 7), ("refund", "p-7")] == payments.log

    def test_repr_and_label(self):
        """Call's repr and label name the service and method."""
        call = sf.Call("payments", "charge", compensate="refund", name="pay")

        assert "payments.charge" == call.label
        assert "Call('payments', 'charge', compensate='refund', name='pay')" == repr(call)

    def test_empty_names_refused(self):
        """service and method must be non-empty strings."""
        with pytest.raises(TypeError, match="service"):
            sf.Call("", "charge")
