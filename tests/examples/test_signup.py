"""
The signup example: a failed subscription deletes the customer just created.
"""

from __future__ import annotations

import asyncio

import pytest
from example_runner import load_example, run_example
from hypothesis import given, settings

from systemflow.state import InMemoryStateStore, RunStatus
from systemflow.testing import (
    CallLog,
    CrashPoint,
    FlowCase,
    FlowHarness,
    FlowTestCase,
    MockService,
    assert_call_order,
    assert_called,
    assert_compensated,
    assert_failed_at,
    assert_not_called,
    strategies,
)

example = load_example("signup")

ANN = example.SignupRequest("ann@example.org", "Ann", "pro", "card-0001")
CUSTOMER = example.Customer("C-1", "ann@example.org", "Ann")
SUBSCRIPTION = example.Subscription("S-1", "C-1", "pro")
PACK = example.WelcomePack("C-1", "S-1", "pro")
TIMEOUT = example.BillingTimeoutError("the billing provider timed out")
DECLINED = example.CardDeclinedError("card-0002 was declined")


@pytest.fixture(name="workdir", scope="module")
def _workdir(tmp_path_factory):
    # The runs go to systemflow.sqlite3 in the working directory: a directory of its own.
    return tmp_path_factory.mktemp("signup")


@pytest.fixture(name="script", scope="module")
def _script(workdir):
    return run_example("signup", cwd=workdir)


def mocks(*, subscription=(SUBSCRIPTION,)):
    """The signup's services as mocks checked against the example's protocols."""
    log = CallLog()
    customers = MockService("customers", spec=example.Customers, log=log)
    customers.on("create").returns(CUSTOMER)
    customers.on("delete")
    subscriptions = MockService("subscriptions", spec=example.Subscriptions, log=log)
    subscriptions.on("create").then(*subscription)
    events = MockService("events", spec=example.Events, log=log)
    events.on("publish")
    return {"customers": customers, "subscriptions": subscriptions, "events": events}


@pytest.fixture(name="durable")
def _durable(flow_harness, memory_store):
    """The example's durable flow (its own name and types) on the harness's fake clock."""
    return flow_harness.durable(example.build(memory_store))


class TestScript:
    def test_exits_zero(self, script):
        """The script runs to the end without error."""
        assert (0, "") == (script.returncode, script.stderr)

    def test_prints_the_signup(self, script):
        """Ann is signed up, after one retried timeout."""
        out = script.stdout

        assert "=> SIGNED UP: customer C-1, subscription S-1" in out
        assert "systemflow.retry_scheduled at signup/accounts/subscription" in out

    def test_prints_the_undo(self, script):
        """Bob's declined card deletes his customer, and the history records it."""
        lines = [line.split() for line in script.stdout.splitlines()]

        assert ["customers", "left:", "none"] in lines
        assert ["5", "compensated", "signup/accounts/customer"] in lines

    def test_keeps_the_runs_in_sqlite(self, script, workdir):
        """The runs are kept in the default SQLite file of the working directory."""
        assert (workdir / "systemflow.sqlite3").is_file()


class TestSignupCases(FlowTestCase):
    """The signup tree in-process, not durable: a table of cases."""

    async def test_cases(self):
        """Each kind of signup ends as it should."""
        await self.run_cases(
            example.build_flow(),
            [
                FlowCase("happy", ANN, expected_output=PACK, mocks=mocks()),
                FlowCase(
                    "two timeouts",
                    ANN,
                    expected_output=PACK,
                    mocks=mocks(subscription=(TIMEOUT, TIMEOUT, SUBSCRIPTION)),
                ),
                FlowCase(
                    "declined card",
                    ANN,
                    expected_error=example.CardDeclinedError,
                    mocks=mocks(subscription=(DECLINED,)),
                ),
                FlowCase(
                    "billing down for good",
                    ANN,
                    expected_error=example.BillingTimeoutError,
                    mocks=mocks(subscription=(TIMEOUT,)),
                ),
                FlowCase(
                    "unknown plan",
                    example.SignupRequest("ann@example.org", "Ann", "gold", "card-0001"),
                    expected_error="no plan 'gold'",
                    mocks=mocks(),
                ),
            ],
        )


class TestSignup:
    """The durable signup under the testing kit."""

    async def test_happy_path_completes(self, durable):
        """A good card creates a customer and a subscription, and the run completes."""
        result = await durable.run(ANN, services=mocks())

        assert (RunStatus.COMPLETED, PACK) == (result.record.status, result.output)

    async def test_happy_path_announces_the_signup(self, durable):
        """The signup is published once, with the ids it created."""
        services = mocks()
        await durable.run(ANN, services=services)

        event = example.SignedUp("C-1", "S-1", "pro")
        assert_called(services["events"], "publish", times=1, args=["customer.signed_up", event])

    async def test_timeouts_are_retried(self, durable, flow_harness):
        """Two billing timeouts are retried on the fake clock; the third attempt subscribes."""
        services = mocks(subscription=(TIMEOUT, TIMEOUT, SUBSCRIPTION))
        result = await durable.run(ANN, services=services)

        assert RunStatus.COMPLETED == result.record.status
        assert_called(services["subscriptions"], "create", times=3)
        assert 2 == len(flow_harness.clock.sleeps)

    async def test_declined_card_deletes_the_customer(self, durable):
        """A declined card fails the run and deletes the customer it created."""
        services = mocks(subscription=(DECLINED,))
        result = await durable.run(ANN, services=services)

        assert RunStatus.FAILED == result.record.status
        assert_failed_at(result, "signup/accounts/subscription")
        assert_compensated(result, "signup/accounts/customer")
        assert_called(services["customers"], "delete", times=1, args=[CUSTOMER])
        assert_call_order(result, "customers.create", "subscriptions.create", "customers.delete")

    async def test_declined_card_is_not_retried(self, durable):
        """A declined card is not worth another try: one attempt."""
        services = mocks(subscription=(DECLINED,))
        await durable.run(ANN, services=services)

        assert_called(services["subscriptions"], "create", times=1)

    async def test_declined_card_names_the_cause(self, durable):
        """The run's error names the failed step and the billing error."""
        result = await durable.run(ANN, services=mocks(subscription=(DECLINED,)))

        assert "signup/accounts/subscription" in result.record.error
        assert "CardDeclinedError" in result.record.error

    async def test_declined_card_history_records_the_undo(self, durable):
        """The history: the failure, then the undo of the customer, then the run's failure."""
        result = await durable.run(ANN, services=mocks(subscription=(DECLINED,)))
        history = await durable.history(result.record.id)

        expected = [
            ("failed", ("signup", "accounts", "subscription")),
            ("compensated", ("signup", "accounts", "customer")),
            ("run_failed", ("signup", "accounts", "subscription")),
        ]
        assert expected == [(event.kind, event.path) for event in history][-3:]

    async def test_declined_card_announces_nothing(self, durable):
        """A failed signup publishes no event."""
        services = mocks(subscription=(DECLINED,))
        await durable.run(ANN, services=services)

        assert_not_called(services["events"])

    async def test_unknown_plan_creates_nothing(self, durable):
        """An unknown plan fails at open_signup, before any service is called."""
        gold = example.SignupRequest("ann@example.org", "Ann", "gold", "card-0001")
        result = await durable.run(gold, services=mocks())

        assert_failed_at(result, "open_signup")
        assert (RunStatus.FAILED, ()) == (result.record.status, result.calls)
        assert "no plan 'gold'" in result.record.error

    async def test_steps_pass_idempotency_keys(self, durable):
        """The customer and the subscription are created with the run's key for their node."""
        services = mocks()
        await durable.run(ANN, services=services, run_id="run-1")

        key = {"idempotency_key": "run-1:signup/accounts/customer"}
        assert_called(services["customers"], "create", args=[ANN], kwargs=key)
        (subscribe,) = services["subscriptions"].calls_to("create")
        assert "run-1:signup/accounts/subscription" == subscribe.kwargs["idempotency_key"]


class TestSignupCrashes:
    """A process that dies anywhere in a signup, and the run resumed by another."""

    async def test_crash_before_the_customer_is_recorded(self, durable):
        """Dying between the customer's creation and its checkpoint creates it again, same key."""
        services = mocks()
        point = CrashPoint("signup/accounts/customer", when="before")
        result = await durable.run(ANN, services=services, crash_at=point)
        keys = {c.kwargs["idempotency_key"] for c in services["customers"].calls_to("create")}

        assert ((point,), PACK) == (result.crashes, result.output)
        assert_called(services["customers"], "create", times=2)
        assert 1 == len(keys)

    async def test_crash_after_the_customer_then_declined_deletes_it(self, durable):
        """Resumed after a crash, a declined card still deletes the customer read back."""
        services = mocks(subscription=(DECLINED,))
        point = CrashPoint("signup/accounts/customer", when="after")
        result = await durable.run(ANN, services=services, crash_at=point)

        assert (point,) == result.crashes
        assert_called(services["customers"], "create", times=1)
        assert_called(services["customers"], "delete", times=1, args=[CUSTOMER])
        assert_compensated(result, "signup/accounts/customer")

    @settings(max_examples=30, deadline=None, database=None, derandomize=True)
    @given(point=strategies.crash_points(example.build_flow()))
    def test_a_crash_anywhere_changes_nothing(self, point):
        """Wherever the process dies, the resumed run gives what an uninterrupted run gives."""

        async def scenario():
            harness = FlowHarness()
            flow = example.build(InMemoryStateStore())
            expected = await harness.durable(flow).run(ANN, services=mocks())
            services = mocks()
            crashed = await harness.durable(flow).run(ANN, services=services, crash_at=point)
            return expected, crashed, services

        expected, crashed, services = asyncio.run(scenario())

        assert (point,) == crashed.crashes
        assert (RunStatus.COMPLETED, expected.output) == (crashed.record.status, crashed.output)
        assert_called(services["events"], "publish")
        assert_not_called(services["customers"], "delete")
