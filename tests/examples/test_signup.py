"""
The signup example: a failed subscription deletes the customer just created.
"""

from __future__ import annotations

import pytest
from example_runner import load_example, run_example

from systemflow.state import InMemoryStateStore, RunStatus

example = load_example("signup")


@pytest.fixture(name="workdir", scope="module")
def _workdir(tmp_path_factory):
    # The runs go to systemflow.sqlite3 in the working directory: a directory of its own.
    return tmp_path_factory.mktemp("signup")


@pytest.fixture(name="script", scope="module")
def _script(workdir):
    return run_example("signup", cwd=workdir)


async def sign_up(card="card-0001", fakes=None, plan="pro"):
    """Start one durable signup in memory; return (store, fakes, record)."""
    store = InMemoryStateStore()
    fakes = example.make_services() if fakes is None else fakes
    request = example.SignupRequest("ann@example.org", "Ann", plan, card)
    record = await example.build(store).start(request, services=fakes.services)
    return store, fakes, record


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


class TestSignup:
    async def test_happy_path_completes(self):
        """A good card creates a customer and a subscription, and the run completes."""
        _, _, record = await sign_up()

        expected = (RunStatus.COMPLETED, example.WelcomePack("C-1", "S-1", "pro"))
        assert expected == (record.status, record.output)

    async def test_happy_path_announces_the_signup(self):
        """The signup is published once, with the ids it created."""
        _, fakes, _ = await sign_up()

        expected = [("customer.signed_up", example.SignedUp("C-1", "S-1", "pro"))]
        assert expected == fakes.events.published

    async def test_timeouts_are_retried(self):
        """Two billing timeouts are retried; the third attempt subscribes."""
        fakes = example.make_services(billing_timeouts=2)
        _, _, record = await sign_up(fakes=fakes)

        assert (RunStatus.COMPLETED, 3) == (record.status, fakes.subscriptions.attempts)

    async def test_declined_card_deletes_the_customer(self):
        """A declined card fails the run and deletes the customer it created."""
        _, fakes, record = await sign_up(card="card-0002")

        assert RunStatus.FAILED == record.status
        assert {} == fakes.customers.customers
        assert ["C-1"] == [customer.id for customer in fakes.customers.deleted]

    async def test_declined_card_is_not_retried(self):
        """A declined card is not worth another try: one attempt."""
        _, fakes, _ = await sign_up(card="card-0002")

        assert 1 == fakes.subscriptions.attempts

    async def test_declined_card_names_the_cause(self):
        """The run's error names the failed step and the billing error."""
        _, _, record = await sign_up(card="card-0002")

        assert "signup/accounts/subscription" in record.error
        assert "CardDeclinedError" in record.error

    async def test_declined_card_history_records_the_undo(self):
        """The history: the failure, then the undo of the customer, then the run's failure."""
        store, _, record = await sign_up(card="card-0002")
        history = await store.history(record.id)

        expected = [
            ("failed", ("signup", "accounts", "subscription")),
            ("compensated", ("signup", "accounts", "customer")),
            ("run_failed", ("signup", "accounts", "subscription")),
        ]
        assert expected == [(event.kind, event.path) for event in history][-3:]

    async def test_declined_card_announces_nothing(self):
        """A failed signup publishes no event."""
        _, fakes, _ = await sign_up(card="card-0002")

        assert [] == fakes.events.published

    async def test_unknown_plan_creates_nothing(self):
        """An unknown plan fails at open_signup, before any service is called."""
        _, fakes, record = await sign_up(plan="gold")

        assert (RunStatus.FAILED, {}) == (record.status, fakes.customers.customers)
        assert "no plan 'gold'" in record.error

    async def test_steps_pass_idempotency_keys(self):
        """The customer is created with the run's key for its node."""
        _, fakes, record = await sign_up()

        assert [f"{record.id}:signup/accounts/customer"] == list(fakes.customers._by_key)
