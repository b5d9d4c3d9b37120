"""
The loan application example: its command line across processes, and its flow in-process.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
from typing import TYPE_CHECKING, Any

import attrs
import pytest
from example_runner import field, load_example, run_example

from systemflow.state import InMemoryStateStore, RunStatus
from systemflow.testing import CrashPoint, DurableFlow, FakeClock, FlowHarness, assert_compensated

if TYPE_CHECKING:
    import subprocess
    from pathlib import Path

COOLING_OFF = 0.3  # seconds: the cooling-off period of the command-line runs


example = load_example("loan_application")


# --- The command line, one process per command ---------------------------------


@attrs.frozen
class Cli:
    """The example's command line, run in its own directory: the SQLite file lands there."""

    cwd: Path
    cooling_off: float = COOLING_OFF

    def __call__(self, *args: str, cooling_off: float | None = None) -> subprocess.CompletedProcess:
        seconds = self.cooling_off if cooling_off is None else cooling_off
        env = {**os.environ, "LOAN_COOLING_OFF_SECONDS": str(seconds)}
        return run_example("loan_application", *args, cwd=self.cwd, env=env)


def timeline(show: subprocess.CompletedProcess) -> list[tuple[str, str, str]]:
    """The (event, node, what) rows of the timeline ``show`` prints, by column."""
    rows = show.stdout.partition("history:\n")[2].splitlines()[1:]  # past the header
    return [(row[19:30].strip(), row[32:74].strip(), row[76:].strip()) for row in rows]


def document(kind: str) -> str:
    return json.dumps({"document_id": f"{kind.upper()}-1"})


@attrs.frozen
class Story:
    """One application taken from start to end, one command per process."""

    run_id: str
    steps: dict[str, subprocess.CompletedProcess]
    cwd: Path


def tell(cli: Cli, applicant: str, amount: int, approval: dict[str, Any] | None = None) -> Story:
    """Start an application, send its documents, wait out the cooling-off, approve if asked."""
    steps = {"start": cli("start", "--applicant", applicant, "--amount", str(amount))}
    run_id = field(steps["start"], "run id")
    for kind in example.required_documents(amount):
        steps[f"signal {kind}"] = cli("signal", run_id, f"document:{kind}", document(kind))
    steps["resume"] = cli("resume", run_id)
    time.sleep(COOLING_OFF)
    steps["resume after cooling-off"] = cli("resume", run_id)
    if approval is not None:
        steps["signal approval"] = cli("signal", run_id, "approval", json.dumps(approval))
        steps["resume after approval"] = cli("resume", run_id)
    steps["show"] = cli("show", run_id)
    return Story(run_id, steps, cli.cwd)


@pytest.fixture(scope="module")
def jane(tmp_path_factory: pytest.TempPathFactory) -> Story:
    """Jane Smith (score 720) asks for 75,000: approved without a manual review."""
    return tell(Cli(tmp_path_factory.mktemp("jane")), "Jane Smith", 75_000)


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> Story:
    """Jane Smith asks for 150,000: the underwriter must agree."""
    return tell(Cli(tmp_path_factory.mktemp("large")), "Jane Smith", 150_000)


@pytest.fixture(scope="module")
def low_score(tmp_path_factory: pytest.TempPathFactory) -> Story:
    """Max Mustermann (score 590) asks for 20,000: a reviewer approves."""
    approval = {"approved": True, "reviewer": "Ann Lee", "comments": "long-standing customer"}
    return tell(Cli(tmp_path_factory.mktemp("low")), "Max Mustermann", 20_000, approval)


@pytest.fixture(scope="module")
def waiting(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Cli, str, subprocess.CompletedProcess]:
    """A run that has reached an hour-long cooling-off period."""
    cli = Cli(tmp_path_factory.mktemp("cooling"), cooling_off=3600)
    run_id = field(cli("start", "--applicant", "Jane Smith", "--amount", "30000"), "run id")
    for kind in ("identity", "income"):
        cli("signal", run_id, f"document:{kind}", document(kind))
    return cli, run_id, cli("resume", run_id)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess:
    """The script run without arguments: the demo."""
    return Cli(tmp_path_factory.mktemp("demo"))()


class TestStartCommand:
    def test_exits_zero(self, jane):
        """start succeeds and writes nothing to stderr."""
        assert (0, "") == (jane.steps["start"].returncode, jane.steps["start"].stderr)

    def test_prints_a_run_id(self, jane):
        """start prints the new run's id, a UUID."""
        uuid = r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}"
        assert re.fullmatch(uuid, jane.run_id) is not None

    def test_run_pauses_for_the_documents(self, jane):
        """After the credit check the run waits for its documents."""
        expected = (
            "paused",
            "signal document:identity and signal document:income and signal document:address",
        )
        assert expected == (
            field(jane.steps["start"], "status"),
            field(jane.steps["start"], "waiting for"),
        )

    def test_prints_the_documents_required(self, jane):
        """Above 50,000 proof of address is required too."""
        assert "identity, income, address" == field(jane.steps["start"], "documents")

    def test_calls_the_credit_bureau(self, jane):
        """The fake bureau reports Jane Smith's score."""
        assert "score 720" in jane.steps["start"].stdout

    def test_keeps_runs_in_the_working_directory(self, jane):
        """The default store is systemflow.sqlite3 in the working directory."""
        assert (jane.cwd / "systemflow.sqlite3").is_file()


class TestSignalCommand:
    def test_delivers_each_document(self, jane):
        """Each document signal is delivered with its payload."""
        kinds = ("identity", "income", "address")
        expected = [f"document:{kind} {document(kind)}" for kind in kinds]
        assert expected == [field(jane.steps[f"signal {kind}"], "delivered") for kind in kinds]

    def test_refuses_a_payload_of_the_wrong_shape(self, tmp_path):
        """A payload the run could not read is refused before it is sent."""
        result = Cli(tmp_path)("signal", "some-run", "approval", '{"approved": "yes"}')
        assert (2, True) == (result.returncode, "is not a Review" in result.stderr)

    def test_refuses_an_unknown_signal(self, tmp_path):
        """A signal this flow never waits for is refused."""
        result = Cli(tmp_path)("signal", "some-run", "document:passport", '{"document_id": "P-1"}')
        assert (2, True) == (result.returncode, "waits for no signal" in result.stderr)

    def test_refuses_an_unknown_run(self, tmp_path):
        """Signalling a run that does not exist fails with a message, not a traceback."""
        result = Cli(tmp_path)("signal", "no-such-run", "document:identity", document("identity"))
        assert (1, True) == (result.returncode, result.stderr.startswith("error: "))


class TestResumeCommand:
    def test_reaches_the_cooling_off_period(self, jane):
        """With the documents in, the run pauses at the durable timer."""
        resumed = jane.steps["resume"]
        expected = ("paused", "cooling_off", True)
        actual = (
            field(resumed, "status"),
            field(resumed, "current path"),
            field(resumed, "waiting for").startswith("the timer, due at"),
        )
        assert expected == actual

    def test_completes_after_the_cooling_off_period(self, jane):
        """Resumed once the timer is due, the run completes."""
        assert "completed" == field(jane.steps["resume after cooling-off"], "status")

    def test_prints_the_decision(self, jane):
        """The decision says the money was paid."""
        decision = field(jane.steps["resume after cooling-off"], "decision")
        assert decision.startswith("APPROVED: $75,000 paid to Jane Smith (transaction TX-")

    def test_approves_automatically(self, jane):
        """A score of 720 needs no manual review."""
        assert "automatic approval: credit score 720 >= 700" == field(
            jane.steps["resume after cooling-off"], "reason"
        )

    def test_does_not_call_the_bureau_again(self, jane):
        """The credit report is read back from the history, not asked for again."""
        assert "[bureau]" not in jane.steps["resume after cooling-off"].stdout

    def test_pays_and_books_the_loan(self, jane):
        """The bank pays and the servicing system opens the account, in the last process."""
        out = jane.steps["resume after cooling-off"].stdout
        assert (True, True) == (
            "[bank] paid $75,000 to Jane Smith" in out,
            "[servicing] loan account" in out,
        )


class TestShowCommand:
    def test_prints_the_status(self, jane):
        """show says the run completed and where it ended."""
        show = jane.steps["show"]
        assert ("completed", "outcome/payout/approve") == (
            field(show, "status"),
            field(show, "current path"),
        )

    def test_prints_the_input(self, jane):
        """show prints the application the run started with."""
        expected = (
            "LoanApplication(applicant_name='Jane Smith', amount=75000, purpose='personal loan')"
        )
        assert expected == field(jane.steps["show"], "input")

    def test_prints_the_output(self, jane):
        """show prints the decision the run returned."""
        assert field(jane.steps["show"], "output").startswith(
            "LoanDecision(applicant_name='Jane Smith', amount=75000, decision='approved'"
        )

    def test_prints_no_error(self, jane):
        """A completed run has no error."""
        assert "None" == field(jane.steps["show"], "error")

    def test_prints_the_history(self, jane):
        """The timeline lists every event, in order, with the node it concerns."""
        expected = [
            ("started", ""),
            ("step", "open_case"),
            ("step", "intake/credit"),
            ("decision", "intake/documents"),
            ("paused", "intake/documents/with_address/identity"),
            ("signalled", ""),
            ("signalled", ""),
            ("signalled", ""),
            ("resumed", ""),
            ("signal", "intake/documents/with_address/identity"),
            ("signal", "intake/documents/with_address/income"),
            ("signal", "intake/documents/with_address/address"),
            ("timer", "cooling_off"),
            ("paused", "cooling_off"),
            ("resumed", ""),
            ("decision", "assessment/review"),
            ("step", "assessment/review/auto_approve"),
            ("decision", "assessment/underwriting"),
            ("step", "assessment/underwriting/not_required"),
            ("decision", "outcome"),
            ("step", "outcome/payout/funds/disbursement"),
            ("step", "outcome/payout/funds/account"),
            ("step", "outcome/payout/approve"),
            ("completed", ""),
        ]
        assert expected == [(kind, node) for kind, node, _what in timeline(jane.steps["show"])]

    def test_names_the_branches_taken(self, jane):
        """Each decision says which predicate chose which branch."""
        expected = [
            "needs_proof_of_address: yes -> with_address",
            "good_credit: yes -> auto_approve",
            "needs_underwriter: no -> not_required",
            "is_approved: yes -> payout",
        ]
        rows = timeline(jane.steps["show"])
        assert expected == [what for kind, _node, what in rows if kind == "decision"]

    def test_shows_the_signal_payloads(self, jane):
        """Each consumed document's payload is in the history."""
        expected = [
            json.dumps({"document_id": f"{kind.upper()}-1"})
            for kind in ("identity", "income", "address")
        ]
        rows = timeline(jane.steps["show"])
        assert expected == [what for kind, _node, what in rows if kind == "signal"]

    def test_every_command_exits_zero(self, jane):
        """No command of the story failed or wrote to stderr."""
        expected = dict.fromkeys(jane.steps, (0, ""))
        assert expected == {name: (r.returncode, r.stderr) for name, r in jane.steps.items()}


class TestLargeLoan:
    def test_completes(self, large):
        """A 150,000 loan with a good score completes."""
        assert "completed" == field(large.steps["show"], "status")

    def test_goes_through_the_underwriter(self, large):
        """Over 100,000 the underwriter is asked, in the process that resumed last."""
        assert "[underwriter] approves $150,000" in large.steps["resume after cooling-off"].stdout

    def test_records_the_underwriting_step(self, large):
        """The history holds the underwriting decision and the underwriter's step."""
        expected = [
            ("decision", "assessment/underwriting", "needs_underwriter: yes -> underwrite"),
            ("step", "assessment/underwriting/underwrite"),
        ]
        rows = timeline(large.steps["show"])
        actual = [
            row[:2] if row[0] == "step" else row
            for row in rows
            if row[1].startswith("assessment/underwriting")
        ]
        assert expected == actual

    def test_gives_the_underwriters_reason(self, large):
        """The decision's reason quotes both the approval and the underwriter."""
        expected = (
            "automatic approval: credit score 720 >= 700; R. Underwood: score 720 supports $150,000"
        )
        assert expected == field(large.steps["show"], "reason")


class TestLowCreditScore:
    def test_waits_for_a_manual_review(self, low_score):
        """A score of 590 is below 700: the run waits for the approval signal."""
        resumed = low_score.steps["resume after cooling-off"]
        expected = ("paused", "assessment/review/manual_review", "signal approval")
        actual = (
            field(resumed, "status"),
            field(resumed, "current path"),
            field(resumed, "waiting for"),
        )
        assert expected == actual

    def test_needs_two_documents(self, low_score):
        """At 20,000 no proof of address is needed."""
        assert "identity, income" == field(low_score.steps["start"], "documents")

    def test_completes_once_approved(self, low_score):
        """After the reviewer's approval the run completes, approved."""
        resumed = low_score.steps["resume after approval"]
        expected = ("completed", "APPROVED: $20,000 paid to Max Mustermann")
        assert expected == (field(resumed, "status"), field(resumed, "decision").partition(" (")[0])

    def test_gives_the_reviewers_reason(self, low_score):
        """The decision's reason is the reviewer's comment; no underwriter at 20,000."""
        assert "Ann Lee: long-standing customer" == field(
            low_score.steps["resume after approval"], "reason"
        )


class TestCoolingOff:
    def test_resuming_early_pauses_again(self, waiting):
        """A resume before the deadline leaves the run paused at the timer."""
        cli, run_id, _first = waiting
        again = cli("resume", run_id)
        assert ("paused", "cooling_off") == (field(again, "status"), field(again, "current path"))

    def test_the_deadline_survives_the_process(self, waiting):
        """Another process sees the deadline the first one set."""
        cli, run_id, first = waiting
        assert field(first, "waiting for") == field(cli("resume", run_id), "waiting for")

    def test_another_cooling_off_is_a_new_version(self, waiting):
        """Resuming with another cooling-off period is refused, with a hint."""
        cli, run_id, _first = waiting
        result = cli("resume", run_id, cooling_off=1)
        assert (1, True, True) == (
            result.returncode,
            "flow version" in result.stderr,
            "LOAN_COOLING_OFF_SECONDS" in result.stderr,
        )


class TestDemo:
    def test_exits_zero(self, demo):
        """The demo (the default command) runs to the end without error."""
        assert (0, "") == (demo.returncode, demo.stderr)

    def test_ends_approved(self, demo):
        """John Doe's loan ends approved and paid."""
        assert "APPROVED: $120,000 paid to John Doe" in demo.stdout

    def test_waits_for_the_reviewer(self, demo):
        """John Doe's score sends the run to a manual review."""
        assert "waiting for:   signal approval" in demo.stdout

    def test_prints_the_history(self, demo):
        """The demo ends with the run's timeline."""
        assert "good_credit: no -> manual_review" in demo.stdout


# --- The flow in-process: a store in memory and a clock that skips time ---------


@attrs.define
class Desk:
    """One durable loan flow under the testing kit: its store, fake clock and fake services."""

    harness: FlowHarness = attrs.field(factory=FlowHarness)
    fakes: Any = attrs.field(factory=example.make_services)
    cooling_off: float = 60.0
    durable: DurableFlow = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        flow = example.build(InMemoryStateStore(), cooling_off=self.cooling_off)
        self.durable = self.harness.durable(flow)

    @property
    def clock(self) -> FakeClock:
        return self.harness.clock

    @property
    def flow(self) -> Any:
        return self.durable.stateful

    @property
    def store(self) -> Any:
        return self.durable.stateful.store

    async def start(self, applicant: str, amount: int) -> Any:
        application = example.LoanApplication(applicant, amount)
        return await self.durable.start(application, services=self.fakes.services)

    async def resume(self, run_id: str) -> Any:
        return await self.durable.resume(run_id, services=self.fakes.services)

    async def send_documents(self, run_id: str, amount: int) -> None:
        for kind in example.required_documents(amount):
            await self.durable.signal(run_id, f"document:{kind}", {"document_id": f"{kind}-1"})

    async def to_assessment(self, applicant: str, amount: int) -> Any:
        """Start, send the documents, skip the cooling-off on the fake clock; return the record."""
        record = await self.start(applicant, amount)
        await self.send_documents(record.id, amount)
        await self.resume(record.id)
        return await self.durable.fast_forward(record.id, services=self.fakes.services)

    async def kinds(self, run_id: str) -> list[str]:
        return [event.kind for event in await self.durable.history(run_id)]


class TestFlowInProcess:
    async def test_auto_approved_loan_completes(self, capsys):
        """A good score and the documents lead to an approved, paid loan."""
        desk = Desk()
        record = await desk.to_assessment("Jane Smith", 75_000)
        expected = example.LoanDecision(
            applicant_name="Jane Smith",
            amount=75_000,
            decision="approved",
            reason="automatic approval: credit score 720 >= 700",
            credit_score=720,
            documents=("identity-1", "income-1", "address-1"),
            transaction_id=desk.fakes.bank.disbursed[0].transaction_id,
            account_id=desk.fakes.servicing.accounts[0].account_id,
        )
        assert (RunStatus.COMPLETED, expected) == (record.status, record.output)

    async def test_waits_for_the_documents(self, capsys):
        """A started run pauses at the documents, with no timer."""
        record = await Desk().start("Jane Smith", 75_000)
        expected = (RunStatus.PAUSED, ("intake", "documents", "with_address", "identity"), None)
        assert expected == (record.status, record.current_path, record.wake_at)

    async def test_small_loan_needs_no_proof_of_address(self, capsys):
        """At 50,000 identity and income are enough to reach the cooling-off period."""
        desk = Desk()
        record = await desk.start("Jane Smith", 50_000)
        await desk.send_documents(record.id, 50_000)
        record = await desk.resume(record.id)
        assert (RunStatus.PAUSED, ("cooling_off",)) == (record.status, record.current_path)

    async def test_cooling_off_deadline_is_kept(self, capsys):
        """Resuming before the deadline pauses again, due at the same time."""
        desk = Desk()
        record = await desk.start("Jane Smith", 30_000)
        await desk.send_documents(record.id, 30_000)
        due = desk.clock.now() + dt.timedelta(seconds=60)
        await desk.resume(record.id)
        desk.clock.advance(59)
        record = await desk.resume(record.id)
        assert (RunStatus.PAUSED, due) == (record.status, record.wake_at)

    async def test_credit_bureau_is_called_once(self, capsys):
        """Resumes read the credit report back; the bureau is asked once, with the node's key."""
        desk = Desk()
        record = await desk.to_assessment("Jane Smith", 30_000)
        assert [f"{record.id}:intake/credit"] == desk.fakes.bureau.calls

    async def test_low_score_waits_for_approval(self, capsys):
        """Below 700 the run waits for the approval signal after the cooling-off."""
        record = await Desk().to_assessment("Max Mustermann", 20_000)
        expected = (RunStatus.PAUSED, ("assessment", "review", "manual_review"))
        assert expected == (record.status, record.current_path)

    async def test_manual_rejection_pays_nothing(self, capsys):
        """A reviewer's rejection ends the run rejected, with nothing paid."""
        desk = Desk()
        record = await desk.to_assessment("Max Mustermann", 20_000)
        refusal = {"approved": False, "reviewer": "Ann Lee", "comments": "income too low"}
        await desk.store.signal(record.id, "approval", refusal)
        record = await desk.resume(record.id)
        expected = ("rejected", "declined by Ann Lee: income too low", [])
        assert expected == (record.output.decision, record.output.reason, desk.fakes.bank.disbursed)

    async def test_underwriter_declines_a_low_score_large_loan(self, capsys):
        """Over 100,000 with a score of 590 the underwriter declines, even after approval."""
        desk = Desk()
        record = await desk.to_assessment("Max Mustermann", 150_000)
        await desk.store.signal(record.id, "approval", {"approved": True, "reviewer": "Ann Lee"})
        record = await desk.resume(record.id)
        expected = (
            "rejected",
            "declined by R. Underwood: score 590 is below 620 for a large loan",
            [],
        )
        assert expected == (record.output.decision, record.output.reason, desk.fakes.bank.disbursed)

    async def test_failed_booking_reverses_the_payment(self, capsys):
        """When the loan account cannot be opened, the disbursement is reversed."""
        desk = Desk(fakes=example.make_services(servicing_down=True))
        record = await desk.to_assessment("Jane Smith", 75_000)
        assert (RunStatus.FAILED, desk.fakes.bank.disbursed) == (
            record.status,
            desk.fakes.bank.reversed,
        )

    async def test_failed_booking_records_the_undo(self, capsys):
        """The reversal is in the history, after the failure and before the run's end."""
        desk = Desk(fakes=example.make_services(servicing_down=True))
        record = await desk.to_assessment("Jane Smith", 75_000)
        assert ["failed", "compensated", "run_failed"] == (await desk.kinds(record.id))[-3:]

    async def test_a_week_long_cooling_off_is_skipped(self, capsys):
        """The compliance Sleep resumes in the test at once: the fake clock skips a week."""
        desk = Desk(cooling_off=dt.timedelta(days=7).total_seconds())
        started = desk.clock.now()
        record = await desk.to_assessment("Jane Smith", 30_000)

        assert (RunStatus.COMPLETED, dt.timedelta(days=7)) == (
            record.status,
            desk.clock.now() - started,
        )

    async def test_failed_booking_result(self, capsys):
        """The kit's result of the failed booking names the failed step and the undo."""
        desk = Desk(fakes=example.make_services(servicing_down=True))
        record = await desk.to_assessment("Jane Smith", 75_000)
        result = await desk.durable.result(record.id)

        assert ("outcome", "payout", "funds", "account") == result.failed_path
        assert_compensated(result, "outcome/payout/funds/disbursement")

    async def test_crash_after_the_payout_pays_once(self, capsys):
        """A process that dies right after the payout is checkpointed: the resumed run pays once."""
        desk = Desk()
        record = await desk.start("Jane Smith", 30_000)
        await desk.send_documents(record.id, 30_000)
        await desk.resume(record.id)
        desk.clock.advance(desk.cooling_off)
        point = CrashPoint("outcome/payout/funds/disbursement")
        crashed = await desk.durable.resume(record.id, services=desk.fakes.services, crash_at=point)
        done = await desk.resume(record.id)

        assert (RunStatus.RUNNING, RunStatus.COMPLETED) == (crashed.status, done.status)
        assert 1 == len(desk.fakes.bank.disbursed)

    async def test_timeline_shows_the_undo(self, capsys):
        """The example's timeline shows the reversed disbursement."""
        desk = Desk(fakes=example.make_services(servicing_down=True))
        record = await desk.to_assessment("Jane Smith", 75_000)
        rows = example.timeline(await desk.store.history(record.id), desk.flow)
        undone = [row.split()[3:] for row in rows if row.split()[2] == "compensated"]
        assert [["outcome/payout/funds/disbursement", "undone"]] == undone


class TestHelpers:
    @pytest.mark.parametrize(
        ("amount", "expected"),
        [
            (50_000, ("identity", "income")),
            (50_001, ("identity", "income", "address")),
        ],
    )
    def test_required_documents(self, amount, expected):
        """Proof of address is required above 50,000 only."""
        assert expected == example.required_documents(amount)

    def test_check_payload_accepts_an_approval(self):
        """A well-formed approval is returned as parsed JSON."""
        expected = {"approved": True, "reviewer": "Ann Lee"}
        assert expected == example.check_payload("approval", json.dumps(expected))

    def test_check_payload_refuses_a_missing_field(self):
        """A document without its id is refused."""
        with pytest.raises(example.UsageError, match="is not a Document"):
            example.check_payload("document:identity", "{}")

    def test_open_case_refuses_an_empty_name(self):
        """An application without a name is refused before anything runs."""
        with pytest.raises(example.InvalidApplicationError, match="name is required"):
            example.open_case.fn(example.LoanApplication(" ", 1_000))
