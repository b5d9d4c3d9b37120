"""
The invoice approval example: its command line across processes, and its flow in-process.
"""

from __future__ import annotations

import asyncio

import attrs
import pytest
from example_runner import load_example, run_example

from systemflow.state import InMemoryStateStore, RunStatus

example = load_example("invoice_approval")

WAIT_PATH = ("route", "approval", "awaiting", "decision")
ACME = ("--vendor", "Acme Office Supplies", "--department", "facilities", "--amount", "4200")


def field(result, name):
    """The value of a ``name:  value`` line of a command's output."""
    for line in result.stdout.splitlines():
        if line.startswith(f"{name}:"):
            return line.partition(":")[2].strip()
    raise AssertionError(f"no {name!r} line in:\n{result.stdout}\n{result.stderr}")


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


# --- The flow in-process: a store in memory -------------------------------------


@attrs.define
class Desk:
    """One durable invoice flow, its store and its fake services."""

    store: InMemoryStateStore = attrs.field(factory=InMemoryStateStore)
    fakes: object = attrs.field(factory=example.make_services)
    services: dict = attrs.field(default=None)

    def __attrs_post_init__(self):
        if self.services is None:
            self.services = self.fakes.services

    @property
    def flow(self):
        return example.build(self.store)

    async def submit(self, vendor="Acme Office Supplies", department="facilities", cents=420_000):
        invoice = example.Invoice("INV-1", vendor, department, cents)
        return await self.flow.start(invoice, services=self.services)

    async def decide(self, run_id, verdict, by="Tom Baker", comment=""):
        payload = example.decision_payload(verdict, by, comment)
        await self.store.signal(run_id, example.DECISION, payload)
        return await self.flow.resume(run_id, services=self.services)


class TestFlowInProcess:
    async def test_waits_for_the_decision(self):
        """Checks passed, the run pauses at the decision, having asked the approver."""
        desk = Desk()
        record = await desk.submit()

        assert (RunStatus.PAUSED, WAIT_PATH) == (record.status, record.current_path)
        assert ["Tom Baker"] == [to for to, _ in desk.fakes.notifier.sent]
        assert {"INV-1": "awaiting approval"} == desk.fakes.ledger.statuses

    async def test_approval_schedules_the_payment(self):
        """An approval schedules one payment and marks the invoice approved."""
        desk = Desk()
        record = await desk.submit()
        record = await desk.decide(record.id, "approve", comment="as ordered")

        payment = desk.fakes.payments.scheduled[0]
        expected = example.InvoiceOutcome(
            "INV-1",
            "approved",
            reason="approved by Tom Baker: as ordered",
            decided_by="Tom Baker",
            payment_id=payment.payment_id,
        )
        assert (RunStatus.COMPLETED, expected) == (record.status, record.output)
        assert "approved" == desk.fakes.ledger.statuses["INV-1"]

    async def test_rejection_pays_nothing(self):
        """A rejection ends the run rejected, with nothing scheduled."""
        desk = Desk()
        record = await desk.submit()
        record = await desk.decide(record.id, "reject", comment="a duplicate")

        assert ("rejected", "rejected by Tom Baker: a duplicate") == (
            record.output.status,
            record.output.reason,
        )
        assert [] == desk.fakes.payments.scheduled

    async def test_over_budget_is_rejected_without_asking(self):
        """A failed check rejects the invoice at once: no pause, nobody notified."""
        desk = Desk()
        record = await desk.submit(department="marketing", cents=300_000)

        assert (RunStatus.COMPLETED, "rejected", "the checks") == (
            record.status,
            record.output.status,
            record.output.decided_by,
        )
        assert record.output.reason.startswith("failed checks: budget:")
        assert [] == desk.fakes.notifier.sent

    async def test_unknown_vendor_is_rejected(self):
        """An unregistered vendor fails the invoice check."""
        record = await Desk().submit(vendor="Shady Ltd")

        assert "failed checks: invoice: Shady Ltd is not a registered vendor" == (
            record.output.reason
        )

    async def test_large_invoice_goes_to_the_finance_director(self):
        """Above 5,000.00 the finance director is asked, not the manager."""
        desk = Desk()
        await desk.submit(cents=500_001)

        assert ["Maria Garcia"] == [to for to, _ in desk.fakes.notifier.sent]

    async def test_resume_does_not_check_again(self):
        """Resuming reads the checks from the journal: the vendor registry is asked once."""
        desk = Desk()
        record = await desk.submit()
        await desk.flow.resume(record.id, services=desk.services)  # no decision yet: pauses
        await desk.decide(record.id, "approve")

        assert ["Acme Office Supplies"] == desk.fakes.vendors.asked
        assert 1 == len(desk.fakes.notifier.sent)

    async def test_checks_run_at_the_same_time(self):
        """The three checks run concurrently: each waits for the other two to start."""
        barrier = asyncio.Barrier(3)
        fakes = example.make_services()

        class Meeting:
            def __init__(self, service):
                self.service = service

            def __getattr__(self, method):
                async def call(*args):
                    await barrier.wait()  # would never pass if the checks ran one by one
                    return await getattr(self.service, method)(*args)

                return call

        services = {
            **fakes.services,
            "vendors": Meeting(fakes.vendors),
            "budgets": Meeting(fakes.budgets),
            "directory": Meeting(fakes.directory),
        }
        desk = Desk(fakes=fakes, services=services)
        async with asyncio.timeout(10):
            record = await desk.submit()

        assert RunStatus.PAUSED == record.status

    async def test_invalid_invoice_fails_at_open(self):
        """An invoice without an amount fails at open_invoice, before any check."""
        desk = Desk()
        record = await desk.submit(cents=0)

        assert (RunStatus.FAILED, ("open_invoice",)) == (record.status, record.current_path)
        assert [] == desk.fakes.vendors.asked


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
