"""
Loan application: a durable flow that waits for people and for time.

The LoanApplicationWorkflow of the Go workflow demo (the design's seed 003), as
a tree. An application is checked with a credit bureau, then waits for its
documents, for a cooling-off period, for a reviewer when the credit score is not
good enough, and for an underwriter when the amount is large; then the money is
paid out. Between those waits the run is not in memory anywhere: it is a row in
a SQLite file, and each command below is a new process that carries it on::

    open_case                               check the application, open the case
    intake (Assign)
        credit:     check_credit            the credit bureau (idempotency key)
        documents:  needs_proof_of_address? a Conditional, both branches Parallel
            with_address:     identity, income, address      three signals
            without_address:  identity, income               two signals
    cooling_off (Sleep)                     a durable timer (compliance)
    assessment (Assign)
        review:       good_credit?          score >= 700
            auto_approve                    a step
            manual_review                   the signal "approval"
        underwriting: needs_underwriter?    approved, and over 100,000
            underwrite                      the underwriter service
            not_required                    a step: None
    outcome: is_approved?
        payout (Compensatable)              a saga: a failure in it undoes the payment
            funds (Assign)
                disbursement: disburse      the bank; undo: reverse_disbursement
                account:      book_loan     the loan servicing system
            approve                         the decision: approved
        reject                              the decision: rejected

Documents: identity and income always; proof of address too above 50,000.

Every step's outcome, every branch taken, the timer's deadline and every signal
consumed are written to the run's history as they happen. Resuming runs the tree
again from the root; what is recorded is read back instead of done again, so
the credit bureau is called once however many times the run is resumed.

The services are in-process fakes that print what they do. The credit bureau
knows a few applicants: Jane Smith (score 720: approved automatically), John
Doe (655: manual review) and Max Mustermann (590: manual review, and too low
for the underwriter); anyone else gets a score from 600 to 800 made from their
name.

Run it from the repository root. With no arguments it runs the whole story in
one process (the ``demo`` command). Across processes, one command at a time::

    python examples/loan_application.py start --applicant "Jane Smith" --amount 75000
    python examples/loan_application.py signal RUN_ID document:identity '{"document_id": "DL-1"}'
    python examples/loan_application.py signal RUN_ID document:income '{"document_id": "W2-2"}'
    python examples/loan_application.py signal RUN_ID document:address '{"document_id": "UT-3"}'
    python examples/loan_application.py resume RUN_ID    # reaches the cooling-off period
    python examples/loan_application.py resume RUN_ID    # once it is over: approved, paid
    python examples/loan_application.py show RUN_ID      # status, input, output, history
    python examples/loan_application.py list

A manual review takes ``signal RUN_ID approval '{"approved": true, "reviewer":
"Ann Lee", "comments": "stable income"}'``.

Runs are kept in ``systemflow.sqlite3`` in the working directory; ``--db URL``
names another database (``sqlite:///path/to/file`` or
``postgresql+psycopg://user@host/db``).

The cooling-off period lasts 5 seconds, or ``--cooling-off SECONDS``, or the
environment variable ``LOAN_COOLING_OFF_SECONDS`` (the demo: 1.5 seconds). It
is part of the flow's definition: its fingerprint, stored with every run. Give
every command of one run the same value: resuming a run with another one is
refused as a change of version (``FlowVersionMismatch``).

systemflow logs only warnings here; ``--verbose`` shows its info logs too (on
standard error).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import sys
import zlib
from typing import TYPE_CHECKING, Any, Final, Protocol

import attrs
import structlog

import systemflow as sf
from systemflow.state import RunRecord, RunStatus, SqlStateStore

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from systemflow.state import Event, StateStore

NAME: Final = "loan-application"
AUTO_APPROVE_SCORE: Final = 700  # at or above: no manual review
UNDERWRITER_ABOVE: Final = 100_000  # above: an underwriter must agree too
UNDERWRITER_MIN_SCORE: Final = 620  # the underwriter declines below this score
ADDRESS_PROOF_ABOVE: Final = 50_000  # above: proof of address is required too
COOLING_OFF_ENV: Final = "LOAN_COOLING_OFF_SECONDS"
DEFAULT_COOLING_OFF: Final = 5.0
DEMO_COOLING_OFF: Final = 1.5
SCRIPT: Final = "python examples/loan_application.py"

_is_str = attrs.validators.instance_of(str)


# --- The application, and what the flow makes of it ---------------------------


@attrs.frozen
class LoanApplication:
    """What the applicant asks for: the run's input."""

    applicant_name: str
    amount: int
    purpose: str = "personal loan"


@attrs.frozen
class CreditReport:
    score: int
    bureau: str
    reference: str


@attrs.frozen
class Document:
    """The payload of a ``document:<kind>`` signal: the document's id in the archive."""

    document_id: str = attrs.field(validator=_is_str)
    note: str = attrs.field(default="", validator=_is_str)


@attrs.frozen
class Review:
    """The payload of the ``approval`` signal; also what the automatic approval says."""

    approved: bool = attrs.field(validator=attrs.validators.instance_of(bool))
    reviewer: str = attrs.field(validator=_is_str)
    comments: str = attrs.field(default="", validator=_is_str)


@attrs.frozen
class Underwriting:
    approved: bool
    underwriter: str
    reason: str


@attrs.frozen
class Disbursement:
    transaction_id: str
    amount: int
    payee: str


@attrs.frozen
class LoanAccount:
    account_id: str


@attrs.frozen
class LoanCase:
    """
    The application's working record while the flow runs.

    ``open_case`` creates it; the ``Assign`` nodes fill in the other fields,
    one stage at a time. They are empty until then.
    """

    application: LoanApplication
    credit: CreditReport | None = None
    documents: dict[str, Document] = attrs.field(factory=dict)
    review: Review | None = None
    underwriting: Underwriting | None = None
    disbursement: Disbursement | None = None
    account: LoanAccount | None = None

    def credit_score(self) -> int:
        if self.credit is None:
            msg = f"the credit of {self.application.applicant_name} has not been checked yet"
            raise RuntimeError(msg)
        return self.credit.score

    def rejection(self) -> str | None:
        """Say why the loan is declined, or ``None`` if nobody declined it."""
        if self.review is not None and not self.review.approved:
            return "declined by " + _opinion(self.review.reviewer, self.review.comments)
        if self.underwriting is not None and not self.underwriting.approved:
            return f"declined by {self.underwriting.underwriter}: {self.underwriting.reason}"
        return None


@attrs.frozen
class LoanDecision:
    """What the flow returns: the run's output."""

    applicant_name: str
    amount: int
    decision: str  # "approved" or "rejected"
    reason: str
    credit_score: int
    documents: tuple[str, ...]
    transaction_id: str | None = None
    account_id: str | None = None


class InvalidApplicationError(ValueError):
    """The application itself is wrong; nothing was done."""


class ServicingUnavailableError(ConnectionError):
    """The loan servicing system could not open the account."""


def money(amount: int) -> str:
    return f"${amount:,}"


def _opinion(who: str, why: str) -> str:
    return f"{who}: {why}" if why else who


def required_documents(amount: int) -> tuple[str, ...]:
    """The documents an application for ``amount`` needs."""
    if amount > ADDRESS_PROOF_ABOVE:
        return ("identity", "income", "address")
    return ("identity", "income")


# --- The services the flow needs ------------------------------------------------


class CreditBureau(Protocol):
    async def credit_report(self, applicant_name: str, *, idempotency_key: str) -> CreditReport: ...


class UnderwritingDesk(Protocol):
    async def assess(self, application: LoanApplication, credit: CreditReport) -> Underwriting: ...


class Bank(Protocol):
    async def disburse(
        self, application: LoanApplication, *, idempotency_key: str
    ) -> Disbursement: ...
    async def reverse(self, disbursement: Disbursement) -> None: ...


class LoanServicing(Protocol):
    async def open_account(
        self, application: LoanApplication, disbursement: Disbursement
    ) -> LoanAccount: ...


# --- In-process fakes of those services -------------------------------------------
#
# A new process gets new fakes: anything a later process needs must come from
# the run's history, not from them. Ids are made from the idempotency key, so a
# repeated request gets the same answer in any process.

CREDIT_FILES: Final = {"Jane Smith": 720, "John Doe": 655, "Max Mustermann": 590}


def _say(service: str, text: str) -> None:
    print(f"    [{service}] {text}")


def _code(text: str) -> str:
    return f"{zlib.crc32(text.encode()):08X}"


@attrs.define
class FakeBureau:
    calls: list[str] = attrs.field(factory=list)  # the idempotency keys it was called with
    _by_key: dict[str, CreditReport] = attrs.field(factory=dict, repr=False)

    async def credit_report(self, applicant_name: str, *, idempotency_key: str) -> CreditReport:
        self.calls.append(idempotency_key)
        if idempotency_key in self._by_key:  # a repeated request: the same report
            return self._by_key[idempotency_key]
        score = CREDIT_FILES.get(applicant_name, 600 + zlib.crc32(applicant_name.encode()) % 201)
        credit = CreditReport(score, "Demo Credit Bureau", f"CR-{_code(idempotency_key)}")
        self._by_key[idempotency_key] = credit
        _say("bureau", f"credit report {credit.reference} for {applicant_name}: score {score}")
        return credit


@attrs.define
class FakeUnderwriter:
    assessed: list[LoanApplication] = attrs.field(factory=list)

    async def assess(self, application: LoanApplication, credit: CreditReport) -> Underwriting:
        self.assessed.append(application)
        if credit.score >= UNDERWRITER_MIN_SCORE:
            result = Underwriting(
                approved=True,
                underwriter="R. Underwood",
                reason=f"score {credit.score} supports {money(application.amount)}",
            )
        else:
            result = Underwriting(
                approved=False,
                underwriter="R. Underwood",
                reason=f"score {credit.score} is below {UNDERWRITER_MIN_SCORE} for a large loan",
            )
        verdict = "approves" if result.approved else "declines"
        _say("underwriter", f"{verdict} {money(application.amount)}: {result.reason}")
        return result


@attrs.define
class FakeBank:
    disbursed: list[Disbursement] = attrs.field(factory=list)
    reversed: list[Disbursement] = attrs.field(factory=list)
    _by_key: dict[str, Disbursement] = attrs.field(factory=dict, repr=False)

    async def disburse(self, application: LoanApplication, *, idempotency_key: str) -> Disbursement:
        if idempotency_key in self._by_key:  # a repeated request: pay only once
            return self._by_key[idempotency_key]
        payment = Disbursement(
            f"TX-{_code(idempotency_key)}", application.amount, application.applicant_name
        )
        self._by_key[idempotency_key] = payment
        self.disbursed.append(payment)
        _say("bank", f"paid {money(payment.amount)} to {payment.payee} -> {payment.transaction_id}")
        return payment

    async def reverse(self, disbursement: Disbursement) -> None:
        self.reversed.append(disbursement)
        _say("bank", f"reversed {disbursement.transaction_id}: {money(disbursement.amount)} back")


@attrs.define
class FakeServicing:
    down: bool = False
    accounts: list[LoanAccount] = attrs.field(factory=list)

    async def open_account(
        self, application: LoanApplication, disbursement: Disbursement
    ) -> LoanAccount:
        if self.down:
            _say("servicing", "the loan servicing system answered 503 Service Unavailable")
            msg = "loan servicing answered 503 Service Unavailable"
            raise ServicingUnavailableError(msg)
        account = LoanAccount(f"LA-{_code(disbursement.transaction_id)}")
        self.accounts.append(account)
        _say("servicing", f"loan account {account.account_id} for {application.applicant_name}")
        return account


@attrs.frozen
class Fakes:
    """The fake services of one process."""

    bureau: FakeBureau = attrs.field(factory=FakeBureau)
    underwriter: FakeUnderwriter = attrs.field(factory=FakeUnderwriter)
    bank: FakeBank = attrs.field(factory=FakeBank)
    servicing: FakeServicing = attrs.field(factory=FakeServicing)

    @property
    def services(self) -> dict[str, object]:
        """What the steps find in ``ctx.services``: each fake, under its field's name."""
        return attrs.asdict(self, recurse=False)


def make_services(*, servicing_down: bool = False) -> Fakes:
    """Return fresh fakes; ``servicing_down`` makes opening the loan account fail."""
    return Fakes(servicing=FakeServicing(down=servicing_down))


# --- The steps, predicates and waits ------------------------------------------------
#
# Step outputs are written to the run's history, and read back as the function's
# return annotation when the run is resumed: they must be storable (attrs
# classes, dicts, str, ...), and the annotations resolvable at run time.


@sf.step(name="open_case", inline=True)
def open_case(application: LoanApplication) -> LoanCase:
    """Refuse a malformed application, and open the case."""
    problems = []
    if not application.applicant_name.strip():
        problems.append("the applicant's name is required")
    if application.amount < 1:
        problems.append("the amount must be positive")
    if problems:
        raise InvalidApplicationError("; ".join(problems))
    return LoanCase(application)


@sf.step
async def check_credit(ctx: sf.FlowContext, case: LoanCase) -> CreditReport:
    """Ask the bureau; the idempotency key makes a repeated request cost nothing."""
    bureau: CreditBureau = ctx.services["bureau"]
    return await bureau.credit_report(
        case.application.applicant_name, idempotency_key=ctx.idempotency_key
    )


def needs_proof_of_address(case: LoanCase) -> bool:
    return "address" in required_documents(case.application.amount)


def document(kind: str) -> sf.WaitForSignal:
    """Wait for the signal ``document:<kind>``; its payload is a ``Document``."""
    return sf.WaitForSignal(f"document:{kind}", payload_type=Document, name=kind)


# Both branches wait for their documents at the same time: they may come in any
# order, and a document sent before the run gets here is kept until it does.
DOCUMENTS: Final = sf.Conditional(
    needs_proof_of_address,
    sf.Parallel(
        identity=document("identity"),
        income=document("income"),
        address=document("address"),
        name="with_address",
    ),
    otherwise=sf.Parallel(
        identity=document("identity"), income=document("income"), name="without_address"
    ),
)


def good_credit(case: LoanCase) -> bool:
    return case.credit_score() >= AUTO_APPROVE_SCORE


@sf.step(name="auto_approve", inline=True)
def auto_approve(case: LoanCase) -> Review:
    score = case.credit_score()
    return Review(
        approved=True,
        reviewer="automatic approval",
        comments=f"credit score {score} >= {AUTO_APPROVE_SCORE}",
    )


REVIEW: Final = sf.Conditional(
    good_credit,
    auto_approve,
    otherwise=sf.WaitForSignal("approval", payload_type=Review, name="manual_review"),
)


def needs_underwriter(case: LoanCase) -> bool:
    return case.rejection() is None and case.application.amount > UNDERWRITER_ABOVE


@sf.step(name="underwrite")
async def underwrite(ctx: sf.FlowContext, case: LoanCase) -> Underwriting:
    desk: UnderwritingDesk = ctx.services["underwriter"]
    if case.credit is None:
        msg = "underwriting needs the credit report"
        raise RuntimeError(msg)
    return await desk.assess(case.application, case.credit)


@sf.step(name="not_required", inline=True)
def not_required(_case: LoanCase) -> None:
    """The underwriting of a loan that needs none: nothing."""


UNDERWRITING: Final = sf.Conditional(needs_underwriter, underwrite, otherwise=not_required)


def is_approved(case: LoanCase) -> bool:
    return case.review is not None and case.rejection() is None


async def reverse_disbursement(
    ctx: sf.FlowContext, _case: LoanCase, disbursement: Disbursement
) -> None:
    """The undo of ``disburse``: it gets the step's input and output."""
    bank: Bank = ctx.services["bank"]
    await bank.reverse(disbursement)


@sf.step(compensate=reverse_disbursement)
async def disburse(ctx: sf.FlowContext, case: LoanCase) -> Disbursement:
    """Pay the loan out; the idempotency key makes a repeated request pay once."""
    bank: Bank = ctx.services["bank"]
    return await bank.disburse(case.application, idempotency_key=ctx.idempotency_key)


@sf.step
async def book_loan(ctx: sf.FlowContext, case: LoanCase) -> LoanAccount:
    servicing: LoanServicing = ctx.services["servicing"]
    if case.disbursement is None:
        msg = "a loan is booked after it is paid out"
        raise RuntimeError(msg)
    return await servicing.open_account(case.application, case.disbursement)


def _decision(case: LoanCase, decision: str, reason: str) -> LoanDecision:
    return LoanDecision(
        applicant_name=case.application.applicant_name,
        amount=case.application.amount,
        decision=decision,
        reason=reason,
        credit_score=case.credit_score(),
        documents=tuple(doc.document_id for doc in case.documents.values()),
        transaction_id=None if case.disbursement is None else case.disbursement.transaction_id,
        account_id=None if case.account is None else case.account.account_id,
    )


@sf.step(name="approve", inline=True)
def approve(case: LoanCase) -> LoanDecision:
    assert case.review is not None  # noqa: S101 -- is_approved chose this branch
    reasons = [_opinion(case.review.reviewer, case.review.comments)]
    if case.underwriting is not None:
        reasons.append(_opinion(case.underwriting.underwriter, case.underwriting.reason))
    return _decision(case, "approved", "; ".join(reasons))


@sf.step(name="reject", inline=True)
def reject(case: LoanCase) -> LoanDecision:
    return _decision(case, "rejected", case.rejection() or "not approved")


def build_flow(cooling_off: float | dt.timedelta = DEFAULT_COOLING_OFF) -> sf.Flow[Any, Any]:
    """Return the loan application flow: a tree of the nodes above."""
    return sf.Sequence(
        open_case,
        sf.Assign(credit=check_credit, documents=DOCUMENTS, name="intake"),
        sf.Sleep(cooling_off, name="cooling_off"),
        sf.Assign(review=REVIEW, underwriting=UNDERWRITING, name="assessment"),
        sf.Conditional(
            is_approved,
            sf.Compensatable(
                sf.Assign(disbursement=disburse, account=book_loan, name="funds"),
                approve,
                name="payout",
            ),
            otherwise=reject,
            name="outcome",
        ),
    )


def cooling_off_seconds(default: float = DEFAULT_COOLING_OFF) -> float:
    """The cooling-off period: ``$LOAN_COOLING_OFF_SECONDS``, or ``default``."""
    text = os.environ.get(COOLING_OFF_ENV)
    return default if text is None else float(text)


def build(
    store: StateStore,
    *,
    clock: sf.Clock | None = None,
    cooling_off: float | dt.timedelta | None = None,
) -> sf.Stateful:
    """
    Return the durable loan application flow, its runs kept in ``store``.

    ``clock`` is what the cooling-off timer reads (tests pass one that skips
    time); ``cooling_off`` is in seconds, from the environment if not given.
    """
    return sf.Stateful(
        build_flow(cooling_off_seconds() if cooling_off is None else cooling_off),
        store=store,
        name=NAME,
        clock=sf.SystemClock() if clock is None else clock,
    )


# --- Telling what a run is doing -----------------------------------------------


def path_text(path: sf.Path | None) -> str:
    if path is None:
        return "-"
    return "/".join(map(str, path)) or "<root>"


def _untagged(data: Any) -> Any:
    # Stored attrs instances carry a "$type" tag; a person reading does not need it.
    if isinstance(data, dict):
        return {k: _untagged(v) for k, v in data.items() if k != "$type"}
    if isinstance(data, list):
        return [_untagged(v) for v in data]
    return data


def _clip(text: str, width: int = 64) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _short(data: Any) -> str:
    return _clip(json.dumps(_untagged(data), separators=(", ", ": ")))


def _clock_time(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%H:%M:%S.%f")[:-3] + " UTC"


def _branches(flow: sf.Flow[Any, Any]) -> dict[sf.Path, tuple[str, str, str]]:
    # Each Conditional's path: its predicate, and the names of its two branches.
    found = {}
    for path, node in sf.walk(flow):
        if isinstance(node, sf.Conditional):
            then = getattr(node.then, "name", None) or "0"
            otherwise = getattr(node.otherwise, "name", None) or "(passes through)"
            found[path] = (getattr(node.predicate, "__name__", "predicate"), then, otherwise)
    return found


def _error_text(data: Any) -> str:
    # {"error": message, "error_type": ..., "cause_type": ...}: the message says
    # "<node> at <path> in run <id> failed: <what the function raised>".
    if not isinstance(data, dict):
        return _short(data)
    return _clip(str(data.get("error", "")).rpartition(" failed: ")[2], 80)


_DESCRIBE: Final[dict[str, Callable[[Any], str]]] = {
    "started": lambda data: _short(data.get("input", data) if isinstance(data, dict) else data),
    "paused": lambda data: "waits for " + _waits_text(data),
    "signalled": lambda data: f"{data['signal']} delivered",
    "timer": lambda data: f"due at {_clock_time(dt.datetime.fromisoformat(data))}",
    "compensated": lambda _data: "undone",
    "failed": _error_text,
    "run_failed": _error_text,
}


def _event_text(event: Event, branches: dict[sf.Path, tuple[str, str, str]]) -> str:
    data: Any = None if event.data is None else json.loads(event.data)
    if event.kind == "decision" and event.path in branches:
        predicate, then, otherwise = branches[event.path]
        return f"{predicate}: {'yes' if data else 'no'} -> {then if data else otherwise}"
    describe = _DESCRIBE.get(event.kind)
    if describe is not None:
        return describe(data)
    return "" if data is None else _short(data)


def _waits_text(paused: dict[str, Any]) -> str:
    parts = [f"signal {name}" for name in paused.get("signals", [])]
    if paused.get("wake_at"):
        parts.append(
            f"the timer, due at {_clock_time(dt.datetime.fromisoformat(paused['wake_at']))}"
        )
    return " and ".join(parts) or "nothing"


def last_pause(history: Sequence[Event]) -> dict[str, Any]:
    """What the run's last ``paused`` event says it waits for: signals, a timer."""
    for event in reversed(history):
        if event.kind == "paused" and event.data is not None:
            data: dict[str, Any] = json.loads(event.data)
            return data
    return {}


def timeline(history: Sequence[Event], flow: sf.Flow[Any, Any]) -> list[str]:
    """The run's history, one line per event, times relative to the start."""
    if not history:
        return []
    branches = _branches(flow)
    start = history[0].at
    lines = [f"    {'#':>3}  {'time':>8}  {'event':<11}  {'node':<42}  what"]
    for event in history:
        seconds = (event.at - start).total_seconds()
        node = path_text(event.path) if event.path is not None else ""
        lines.append(
            f"    {event.seq:>3}  {seconds:>+7.3f}s  {event.kind:<11}  {node:<42}  "
            f"{_event_text(event, branches)}".rstrip()
        )
    return lines


def decision_text(decision: LoanDecision) -> str:
    if decision.decision == "approved":
        return (
            f"APPROVED: {money(decision.amount)} paid to {decision.applicant_name} "
            f"(transaction {decision.transaction_id}, loan account {decision.account_id})"
        )
    return f"REJECTED: {decision.reason}"


def report(record: RunRecord, history: Sequence[Event]) -> list[str]:
    """A run's status, where it is, and what it waits for or how it ended."""
    lines = [
        f"run id:        {record.id}",
        f"status:        {record.status.value}",
        f"current path:  {path_text(record.current_path)}",
    ]
    if record.status is RunStatus.PAUSED:
        pause = last_pause(history)
        lines.append(f"waiting for:   {_waits_text(pause)}")
        if pause.get("wake_at"):
            due = dt.datetime.fromisoformat(pause["wake_at"])
            left = (due - dt.datetime.now(dt.UTC)).total_seconds()
            lines.append(f"due in:        {max(left, 0.0):.1f} s")
    if isinstance(record.output, LoanDecision):
        lines.append(f"decision:      {decision_text(record.output)}")
        lines.append(f"reason:        {record.output.reason}")
    if record.error is not None:
        lines.append(f"error:         {record.error}")
    return lines


def next_steps(record: RunRecord, history: Sequence[Event]) -> list[str]:
    """The commands that move a paused run on."""
    if record.status is not RunStatus.PAUSED:
        return []
    lines = [
        f"next:          {SCRIPT} signal {record.id} {signal} '{SIGNAL_EXAMPLES.get(signal, '{}')}'"
        for signal in last_pause(history).get("signals", [])
    ]
    lines.append(f"then:          {SCRIPT} resume {record.id}")
    return lines


# --- The command line ---------------------------------------------------------------

SIGNAL_TYPES: Final[dict[str, type[Document | Review]]] = {
    "document:identity": Document,
    "document:income": Document,
    "document:address": Document,
    "approval": Review,
}
SIGNAL_EXAMPLES: Final = {
    "document:identity": '{"document_id": "DL-987654321"}',
    "document:income": '{"document_id": "W2-2023-456"}',
    "document:address": '{"document_id": "UTIL-202401-789"}',
    "approval": '{"approved": true, "reviewer": "Ann Lee", "comments": "stable income"}',
}


class UsageError(Exception):
    """A command was given something it cannot use; nothing was changed."""


def check_payload(signal: str, text: str) -> Any:
    """
    Parse a signal's JSON payload, and check it against the signal's type.

    A payload the run cannot read would fail the run when it consumes it; it is
    refused here instead.
    """
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f"the payload of {signal} is not JSON: {exc}"
        raise UsageError(msg) from exc
    kind = SIGNAL_TYPES.get(signal)
    if kind is None:
        known = ", ".join(SIGNAL_TYPES)
        msg = f"this flow waits for no signal {signal!r} (it knows {known})"
        raise UsageError(msg)
    if not isinstance(payload, dict):
        msg = f"the payload of {signal} must be a JSON object, like {SIGNAL_EXAMPLES[signal]}"
        raise UsageError(msg)
    try:
        kind(**payload)
    except (TypeError, ValueError) as exc:
        msg = f"the payload of {signal} is not a {kind.__name__}: {exc}"
        raise UsageError(msg) from exc
    return payload


async def cmd_start(flow: sf.Stateful, args: argparse.Namespace) -> None:
    application = LoanApplication(args.applicant, args.amount, args.purpose)
    needed = ", ".join(required_documents(application.amount))
    print(
        f"Loan application: {application.applicant_name} asks for "
        f"{money(application.amount)} ({application.purpose})"
    )
    record = await flow.start(application, run_id=args.run_id, services=make_services().services)
    print(f"documents:     {needed}")
    history = await flow.store.history(record.id)
    for line in report(record, history) + next_steps(record, history):
        print(line)


async def cmd_signal(flow: sf.Stateful, args: argparse.Namespace) -> None:
    payload = check_payload(args.signal, args.payload)
    await flow.store.signal(args.run_id, args.signal, payload)
    print(f"run id:        {args.run_id}")
    print(f"delivered:     {args.signal} {json.dumps(payload)}")
    print(f"then:          {SCRIPT} resume {args.run_id}")


async def cmd_resume(flow: sf.Stateful, args: argparse.Namespace) -> None:
    record = await flow.resume(args.run_id, services=make_services().services)
    history = await flow.store.history(record.id)
    for line in report(record, history) + next_steps(record, history):
        print(line)


async def cmd_show(flow: sf.Stateful, args: argparse.Namespace) -> None:
    record = await flow.get(args.run_id)
    history = await flow.store.history(args.run_id)
    for line in report(record, history):
        print(line)
    print(f"input:         {record.input!r}")
    print(f"output:        {record.output!r}")
    print(f"error:         {record.error}")
    print(f"started:       {_clock_time(record.created_at)}")
    print("history:")
    for line in timeline(history, flow):
        print(line)


async def cmd_list(flow: sf.Stateful, _args: argparse.Namespace) -> None:
    runs = await flow.store.list_runs(name=NAME)
    if not runs:
        print("no loan applications yet")
    for record in runs:
        application = (await flow.get(record.id)).input
        print(
            f"{record.id}  {record.status.value:<9}  {application.applicant_name:<16} "
            f"{money(application.amount):>10}  at {path_text(record.current_path)}"
        )


async def _sleep_until(when: dt.datetime | None) -> None:
    if when is not None:
        await asyncio.sleep(max((when - dt.datetime.now(dt.UTC)).total_seconds(), 0.0))


async def cmd_demo(flow: sf.Stateful, args: argparse.Namespace) -> None:
    store = flow.store
    services = make_services().services

    def show(record: RunRecord, history: Sequence[Event]) -> None:
        for line in report(record, history):
            print(f"    {line}")

    async def resume(run_id: str) -> RunRecord:
        record = await flow.resume(run_id, services=services)
        show(record, await store.history(run_id))
        return record

    async def send(run_id: str, signal: str, payload: dict[str, Any]) -> None:
        await store.signal(run_id, signal, payload)
        print(f"    -> signal {signal} {json.dumps(payload)}")

    print("1. John Doe applies for $120,000 for a business expansion. The flow checks his")
    print("   credit, then waits for his documents: three of them, as it is over $50,000.")
    application = LoanApplication("John Doe", 120_000, "business expansion")
    record = await flow.start(application, services=services)
    run_id = record.id
    show(record, await store.history(run_id))

    print("\n2. Two documents arrive. Resuming consumes them; the run waits for the third.")
    await send(run_id, "document:identity", {"document_id": "DL-987654321"})
    await send(run_id, "document:income", {"document_id": "W2-2023-456"})
    await resume(run_id)

    print("\n3. The proof of address arrives. The run reaches the cooling-off period, a")
    print("   durable timer: its deadline is in the run's history, so resuming early only")
    print("   pauses the run again.")
    await send(run_id, "document:address", {"document_id": "UTIL-202401-789"})
    await resume(run_id)
    record = await resume(run_id)

    print(f"\n4. {args.cooling_off:g} s later (on the real clock) the period is over. Resumed,")
    print("   the run goes on: a score of 655 is below 700, so it waits for a reviewer.")
    print("   The credit bureau is not asked again: its report is read from the history.")
    await _sleep_until(record.wake_at)
    await resume(run_id)

    print("\n5. A reviewer approves. $120,000 is over $100,000, so the underwriter assesses")
    print("   it too; then the bank pays the loan out and the loan account is opened.")
    approval = {"approved": True, "reviewer": "Ann Lee", "comments": "stable business income"}
    await send(run_id, "approval", approval)
    await resume(run_id)

    print("\n6. The run's history: every outcome, branch, deadline and signal, as recorded.")
    print("   A resumed run reads these back instead of doing them again.")
    for line in timeline(await store.history(run_id), flow):
        print(line)
    print(f"\nThe run stays in the store: {SCRIPT} show {run_id}")


COMMANDS: Final = {
    "start": cmd_start,
    "signal": cmd_signal,
    "resume": cmd_resume,
    "show": cmd_show,
    "list": cmd_list,
    "demo": cmd_demo,
}


def _positive_int(text: str) -> int:
    value = int(text.replace(",", "").replace("_", ""))
    if value < 1:
        msg = f"must be a positive whole amount, not {text}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        msg = f"must be a number of seconds, 0 or more, not {text}"
        raise argparse.ArgumentTypeError(msg)
    return value


def make_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db",
        metavar="URL",
        help="where runs are kept (default: systemflow.sqlite3 in the working directory)",
    )
    common.add_argument(
        "--cooling-off",
        metavar="SECONDS",
        type=_seconds,
        help=(
            f"the cooling-off period (default: ${COOLING_OFF_ENV}, else {DEFAULT_COOLING_OFF:g}; "
            f"demo: {DEMO_COOLING_OFF:g}); the same for every command of a run"
        ),
    )
    common.add_argument("-v", "--verbose", action="store_true", help="show systemflow's info logs")
    parser = argparse.ArgumentParser(
        description="A durable loan application flow, one command per process.",
        epilog="Without a command: demo.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    start = commands.add_parser("start", parents=[common], help="start an application")
    start.add_argument("--applicant", required=True, help='the applicant, e.g. "Jane Smith"')
    start.add_argument("--amount", required=True, type=_positive_int, help="e.g. 75000")
    start.add_argument("--purpose", default="personal loan", help="what the loan is for")
    start.add_argument("--run-id", help="the run's id (default: a new UUIDv7)")
    signal = commands.add_parser("signal", parents=[common], help="deliver a signal to a run")
    signal.add_argument("run_id", metavar="RUN_ID")
    signal.add_argument("signal", metavar="SIGNAL", help=", ".join(SIGNAL_TYPES))
    signal.add_argument("payload", metavar="PAYLOAD", help='JSON, e.g. \'{"document_id": "DL-1"}\'')
    resume = commands.add_parser("resume", parents=[common], help="carry a run on")
    resume.add_argument("run_id", metavar="RUN_ID")
    show = commands.add_parser("show", parents=[common], help="a run and its history")
    show.add_argument("run_id", metavar="RUN_ID")
    commands.add_parser("list", parents=[common], help="the loan applications, newest first")
    commands.add_parser("demo", parents=[common], help="the whole story in one process")
    return parser


def configure_logging(*, verbose: bool) -> None:
    """systemflow's logs on standard error: warnings only, unless verbose."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.INFO if verbose else logging.WARNING
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


async def run_command(args: argparse.Namespace) -> None:
    if args.cooling_off is None:
        args.cooling_off = DEMO_COOLING_OFF if args.command == "demo" else cooling_off_seconds()
    store = SqlStateStore(args.db)
    try:
        await COMMANDS[args.command](build(store, cooling_off=args.cooling_off), args)
    finally:
        await store.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # no command: the demo, with the defaults
        args = parser.parse_args(["demo"])
    configure_logging(verbose=args.verbose)
    try:
        asyncio.run(run_command(args))
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except sf.FlowVersionMismatch as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(
            "(was the run started with another --cooling-off or "
            f"${COOLING_OFF_ENV}? Use the same value.)",
            file=sys.stderr,
        )
        return 1
    except (sf.RunNotFound, sf.RunFinished, sf.RunLocked, sf.RunExists) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
