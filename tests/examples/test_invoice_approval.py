"""
The invoice approval example: its command line across processes, and its flow in-process.
"""

from __future__ import annotations

import asyncio

import attrs
import pytest
from example_runner import field, load_example, run_example
from hypothesis import given, settings

from systemflow.state import InMemoryStateStore, RunStatus
from systemflow.testing import (
    CallLog,
    CrashPoint,
    DurableFlow,
    FlowHarness,
    MockService,
    assert_call_order,
    assert_called,
    assert_failed_at,
    assert_not_called,
    strategies,
)

example = load_example("invoice_approval")

WAIT_PATH = ("route", "approval", "awaiting", "decision")
ACME = ("--vendor", "Acme Office Supplies", "--department", "facilities", "--amount", "4200")


# --- The command line, one process per command ---------------------------------


@attrs.frozen
class Story:
    start: object
    decide: object
    show: object
    again: object


@pytest.fixture(name="approved_story", scope="module")
def _approved_story(tmp_path_factory):
    """INV-1 is submitted, approved and shown, one process per command."""
    cwd = tmp_path_factory.mktemp("approve")
    start = run_example("invoice_approval", "start", "--invoice", "INV-1", *ACME, cwd=cwd)
    run_id = field(start, "run id")
    decide = run_example(
        "invoice_approval", "signal", run_id, "approve", "--by", "Tom Baker", cwd=cwd
    )
    show = run_example("invoice_approval", "show", run_id, cwd=cwd)
    again = run_example("invoice_approval", "signal", run_id, "reject", "--by", "Tom", cwd=cwd)
    return Story(start, decide, show, again)


@pytest.fixture(name="demo", scope="module")
def _demo(tmp_path_factory):
    """The script run without arguments: the demo."""
    return run_example("invoice_approval", cwd=tmp_path_factory.mktemp("demo"))


class TestCommandLine:
    def test_start_pauses_for_the_decision(self, approved_story):
        """start runs the checks and leaves the run waiting for the decision."""
        start = approved_story.start

        assert (0, "") == (start.returncode, start.stderr)
        assert "paused" == field(start, "status")
        assert field(start, "waiting at").startswith("route/approval/awaiting/decision")

    def test_start_prints_the_checks(self, approved_story):
        """start prints the three checks, all passed."""
        checks = [
            line.split()[1:3]
            for line in approved_story.start.stdout.splitlines()
            if line.startswith("check:")
        ]

        assert [["invoice", "ok"], ["budget", "ok"], ["approver", "ok"]] == checks

    def test_start_tells_how_to_decide(self, approved_story):
        """start prints the command that approves, with the approver's name."""
        assert '--by "Tom Baker"' in field(approved_story.start, "next")

    def test_signal_in_another_process_completes_the_run(self, approved_story):
        """An approval sent by another process resumes the run to its end."""
        decide = approved_story.decide

        assert (0, "completed") == (decide.returncode, field(decide, "status"))
        assert "APPROVED: approved by Tom Baker" == field(decide, "outcome")
        assert field(decide, "payment").startswith("PAY-")

    def test_checks_are_not_run_again(self, approved_story):
        """The resumed run reads the checks from the history: no service is asked again."""
        assert "[vendors]" not in approved_story.decide.stdout

    def test_show_prints_the_history(self, approved_story):
        """show prints the run's history, from the decision to the end."""
        show = approved_story.show
        kinds = [
            line.split()[1]
            for line in show.stdout.partition("history:\n")[2].splitlines()
            if line.strip()
        ]

        assert "completed" == field(show, "status")
        before = ["started", "step", "step", "step", "step", "decision", "step", "paused"]
        assert before == kinds[:8]
        assert ["signal", "decision", "step", "step", "completed"] == kinds[-5:]

    def test_signal_to_a_finished_run_is_refused(self, approved_story):
        """A second decision for a finished run is refused with exit status 1."""
        again = approved_story.again

        assert 1 == again.returncode
        assert "takes no more signals" in again.stderr

    def test_signal_to_an_unknown_run_is_refused(self, tmp_path):
        """A decision for a run that does not exist is refused with exit status 1."""
        result = run_example(
            "invoice_approval", "signal", "nope", "approve", "--by", "X", cwd=tmp_path
        )

        assert (1, "error: no run with id 'nope'\n") == (result.returncode, result.stderr)

    def test_rejection_across_processes(self, tmp_path):
        """A rejection sent by another process ends the run rejected."""
        start = run_example("invoice_approval", "start", "--invoice", "INV-2", *ACME, cwd=tmp_path)
        run_id = field(start, "run id")
        result = run_example(
            "invoice_approval", "signal", run_id, "reject", "--by", "Tom Baker",
            "--comment", "twice", cwd=tmp_path,
        )  # fmt: skip

        assert "REJECTED: rejected by Tom Baker: twice" == field(result, "outcome")

    def test_demo_runs_the_whole_story(self, demo):
        """The demo approves one invoice, rejects one, and one fails the checks."""
        outcomes = [
            line.split(":")[1].strip()
            for line in demo.stdout.splitlines()
            if line.strip().startswith("outcome:")
        ]

        assert (0, "") == (demo.returncode, demo.stderr)
        assert ["APPROVED", "REJECTED", "REJECTED"] == outcomes


# --- The flow in-process: mocked services, the testing kit's durable harness ---------

PAYMENT = example.ScheduledPayment("PAY-1", 420_000, "Acme Office Supplies")


def mocks(*, registered=True, budget=1_000_000):
    """The six services as mocks checked against the example's protocols.

    The directory answers as the example's does (the manager, or the finance
    director above 5,000.00), so the routing is the example's own.
    """
    log = CallLog()
    vendors = MockService("vendors", spec=example.VendorRegistry, log=log)
    vendors.on("is_registered").returns(registered)
    budgets = MockService("budgets", spec=example.Budgets, log=log)
    budgets.on("remaining").returns(budget)
    directory = MockService("directory", spec=example.Directory, log=log)
    directory.on("approver_for").calls(example.FakeDirectory().approver_for)
    notifier = MockService("notifier", spec=example.Notifier, log=log)
    notifier.on("notify")
    ledger = MockService("ledger", spec=example.Ledger, log=log)
    ledger.on("set_status")
    payments = MockService("payments", spec=example.Payments, log=log)
    payments.on("schedule").returns(PAYMENT)
    return {
        "vendors": vendors,
        "budgets": budgets,
        "directory": directory,
        "notifier": notifier,
        "ledger": ledger,
        "payments": payments,
    }


def invoice(vendor="Acme Office Supplies", department="facilities", cents=420_000):
    return example.Invoice("INV-1", vendor, department, cents)


@attrs.define
class Desk:
    """One durable invoice flow under the testing kit, and its mocked services."""

    services: dict = attrs.field(factory=mocks)
    harness: FlowHarness = attrs.field(factory=FlowHarness)
    durable: DurableFlow = attrs.field(init=False)

    def __attrs_post_init__(self):
        self.durable = self.harness.durable(example.build(InMemoryStateStore()))

    def __getitem__(self, service):
        return self.services[service]

    async def submit(self, crash_at=None, **fields):
        return await self.durable.start(
            invoice(**fields), services=self.services, crash_at=crash_at
        )

    async def resume(self, run_id, crash_at=None):
        return await self.durable.resume(run_id, services=self.services, crash_at=crash_at)

    async def decide(self, run_id, verdict, by="Tom Baker", comment="", crash_at=None):
        payload = example.decision_payload(verdict, by, comment)
        await self.durable.signal(run_id, example.DECISION, payload)
        record = await self.resume(run_id, crash_at=crash_at)
        if record.status is RunStatus.RUNNING:  # it crashed: another process takes over
            record = await self.resume(run_id)
        return record


class TestFlowInProcess:
    async def test_waits_for_the_decision(self):
        """Checks passed, the run pauses at the decision, having asked the approver."""
        desk = Desk()
        record = await desk.submit()

        assert (RunStatus.PAUSED, WAIT_PATH) == (record.status, record.current_path)
        assert_called(desk["notifier"], "notify", times=1)
        assert "Tom Baker" == desk["notifier"].calls_to("notify")[0].args[0]
        assert_called(desk["ledger"], "set_status", times=1, args=["INV-1", example.AWAITING])

    async def test_asks_after_the_checks(self):
        """The approver is notified, then the ledger updated, after all three checks."""
        desk = Desk()
        record = await desk.submit()
        result = await desk.durable.result(record.id, services=desk.services)

        for check in ("vendors.is_registered", "budgets.remaining", "directory.approver_for"):
            assert_call_order(result, check, "notifier.notify", "ledger.set_status")

    async def test_approval_schedules_the_payment(self):
        """An approval schedules one payment and marks the invoice approved."""
        desk = Desk()
        record = await desk.submit()
        record = await desk.decide(record.id, "approve", comment="as ordered")

        expected = example.InvoiceOutcome(
            "INV-1",
            "approved",
            reason="approved by Tom Baker: as ordered",
            decided_by="Tom Baker",
            payment_id="PAY-1",
        )
        assert (RunStatus.COMPLETED, expected) == (record.status, record.output)
        assert_called(desk["payments"], "schedule", times=1, args=[invoice()])
        statuses = [call.args[1] for call in desk["ledger"].calls_to("set_status")]
        assert [example.AWAITING, example.APPROVED] == statuses

    async def test_rejection_pays_nothing(self):
        """A rejection ends the run rejected, with nothing scheduled."""
        desk = Desk()
        record = await desk.submit()
        record = await desk.decide(record.id, "reject", comment="a duplicate")

        assert ("rejected", "rejected by Tom Baker: a duplicate") == (
            record.output.status,
            record.output.reason,
        )
        assert_not_called(desk["payments"])

    async def test_over_budget_is_rejected_without_asking(self):
        """A failed check rejects the invoice at once: no pause, nobody notified."""
        desk = Desk(services=mocks(budget=200_000))
        record = await desk.submit(department="marketing", cents=300_000)

        assert (RunStatus.COMPLETED, "rejected", "the checks") == (
            record.status,
            record.output.status,
            record.output.decided_by,
        )
        assert record.output.reason.startswith("failed checks: budget:")
        assert_not_called(desk["notifier"])

    async def test_unknown_vendor_is_rejected(self):
        """An unregistered vendor fails the invoice check."""
        desk = Desk(services=mocks(registered=False))
        record = await desk.submit(vendor="Shady Ltd")

        assert "failed checks: invoice: Shady Ltd is not a registered vendor" == (
            record.output.reason
        )
        assert_called(desk["vendors"], "is_registered", args=["Shady Ltd"])

    async def test_large_invoice_goes_to_the_finance_director(self):
        """Above 5,000.00 the finance director is asked, not the manager."""
        desk = Desk()
        await desk.submit(cents=500_001)

        assert_called(desk["directory"], "approver_for", args=["facilities", 500_001])
        assert ["Maria Garcia"] == [c.args[0] for c in desk["notifier"].calls_to("notify")]

    async def test_resume_does_not_check_again(self):
        """Resuming reads the checks from the journal: the vendor registry is asked once."""
        desk = Desk()
        record = await desk.submit()
        again = await desk.resume(record.id)  # no decision yet: pauses
        await desk.decide(record.id, "approve")

        assert RunStatus.PAUSED == again.status
        assert_called(desk["vendors"], "is_registered", times=1)
        assert_called(desk["notifier"], "notify", times=1)

    async def test_checks_run_at_the_same_time(self):
        """The three checks run concurrently: each waits for the other two to start."""
        barrier = asyncio.Barrier(3)

        def meeting(answer):
            async def call(*_args):
                await barrier.wait()  # would never pass if the checks ran one by one
                return answer

            return call

        services = mocks()
        services["vendors"].on("is_registered").calls(meeting(True))
        services["budgets"].on("remaining").calls(meeting(1_000_000))
        services["directory"].on("approver_for").calls(meeting("Tom Baker"))
        desk = Desk(services=services)
        async with asyncio.timeout(10):
            record = await desk.submit()

        assert RunStatus.PAUSED == record.status

    async def test_invalid_invoice_fails_at_open(self):
        """An invoice without an amount fails at open_invoice, before any check."""
        desk = Desk()
        record = await desk.submit(cents=0)
        result = await desk.durable.result(record.id, services=desk.services)

        assert (RunStatus.FAILED, ("open_invoice",)) == (record.status, record.current_path)
        assert_failed_at(result, "open_invoice")
        assert_not_called(desk["vendors"])


class TestCrashes:
    """A process that dies anywhere in an approval, and the run resumed by another."""

    async def test_crash_after_the_payment_pays_once(self):
        """Dying right after the payment is checkpointed: the resumed run schedules it once."""
        desk = Desk()
        record = await desk.submit()
        point = CrashPoint("route/approval/outcome/approve/pay/payment")
        record = await desk.decide(record.id, "approve", crash_at=point)

        assert ([point], RunStatus.COMPLETED) == (desk.durable.store.crashes, record.status)
        assert_called(desk["payments"], "schedule", times=1)

    @settings(max_examples=40, deadline=None, database=None, derandomize=True)
    @given(point=strategies.crash_points(example.build_flow()))
    def test_a_crash_anywhere_gives_the_same_outcome(self, point):
        """Wherever the process dies, the approved run ends as an uninterrupted one does."""

        async def approve(crash_at):
            desk = Desk()
            record = await desk.submit(crash_at=crash_at)
            if record.status is RunStatus.RUNNING:  # it crashed: another process takes over
                crash_at = None  # one crash per run
                record = await desk.resume(record.id)
            record = await desk.decide(record.id, "approve", crash_at=crash_at)
            return desk, record

        async def scenario():
            return await approve(None), await approve(point)

        (_, expected), (desk, crashed) = asyncio.run(scenario())
        keys = {c.kwargs["idempotency_key"] for c in desk["payments"].calls_to("schedule")}
        # A point on a branch an approved run does not take never fires.
        fires = not {"auto_reject", "reject"} & set(point.path)

        assert (RunStatus.COMPLETED, expected.output) == (crashed.status, crashed.output)
        crashes = [(c.path, c.when) for c in desk.durable.store.crashes]
        assert [(point.path, point.when)] * fires == crashes
        assert 1 == len(keys)  # a payment made again is made with the same key


class TestDecisionPayload:
    @pytest.mark.parametrize(("verdict", "approved"), [("approve", True), ("reject", False)])
    def test_verdicts(self, verdict, approved):
        """approve and reject are the two answers of the one decision signal."""
        expected = {"approved": approved, "by": "Ann", "comment": ""}

        assert expected == example.decision_payload(verdict, "Ann")

    def test_needs_a_name(self):
        """A decision without a name is refused before anything is sent."""
        with pytest.raises(example.UsageError, match="needs the name"):
            example.decision_payload("approve", " ")
