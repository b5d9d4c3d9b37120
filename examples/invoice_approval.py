"""
Invoice approval: checks in parallel, then a person approves or rejects.

The InvoiceApproval workflow of the event-sourced workflow system (the
design's seed 004), as a tree. A submitted invoice is checked three ways at
once (``Promise.all`` in the original: validate the invoice, check the
budget, verify the approver); if all pass, the approver is notified and the
run waits, durably, for a decision. Between submission and decision the run is
not in memory anywhere: it is a row in a SQLite file, and each command below
is a new process::

    open_invoice                            check the invoice's own fields
    review (Assign)
        checks (Parallel)                   the three checks, concurrently
            invoice:   check_invoice        a registered vendor?
            budget:    check_budget         enough left in the department's budget?
            approver:  find_approver        who may approve this amount?
    route: checks_passed?
        approval (Sequence)
            request_approval                notify the approver (idempotency key)
            awaiting (Assign)
                decision: the signal "decision"   approve or reject, by a person
            outcome: is_approved?
                approve (Sequence)
                    pay (Assign)
                        payment: schedule_payment   the payment run (idempotency key)
                    approved                    the ledger: status "approved"
                reject                      the ledger: status "rejected"
        auto_reject                         a check failed: rejected, nobody asked

The original waits for either of two events, ``Approve`` or ``Reject``.
systemflow's ``WaitForSignal`` waits for one named signal, so here the two are
the two answers of one signal, ``decision``, whose payload says which
(``{"approved": true, "by": "Tom Baker"}``); the command line below speaks of
approve and reject and sends that signal.

Every step's outcome, the branches taken and the decision consumed are written
to the run's history as they happen; resuming reads them back instead of doing
them again, so the checks run once however often the run is resumed. The steps
that change something pass ``ctx.idempotency_key`` to their service, so a step
done again after a crash changes nothing twice.

The services are in-process fakes that print what they do. They know three
vendors (Acme Office Supplies, Globex Logistics, Initech Software), three
departments with their budgets (facilities 10,000.00, engineering 50,000.00,
marketing 2,000.00) and their managers, who approve up to 5,000.00; above
that the finance director, Maria Garcia, approves.

Run it from the repository root. With no arguments it runs the whole story in
one process (the ``demo`` command). Across processes, one command at a time::

    python examples/invoice_approval.py start --invoice INV-1001 \\
        --vendor "Acme Office Supplies" --department facilities --amount 4200
    python examples/invoice_approval.py signal RUN_ID approve --by "Tom Baker"
    python examples/invoice_approval.py signal RUN_ID reject --by "Tom Baker" --comment "twice"
    python examples/invoice_approval.py show RUN_ID     # status, checks, history

``signal`` delivers the decision and carries the run on at once. Runs are kept
in ``systemflow.sqlite3`` in the working directory; ``--db URL`` names another
database (``sqlite:///path/to/file`` or ``postgresql+psycopg://user@host/db``).
"""

from __future__ import annotations

import argparse
import asyncio
import decimal
import json
import sys
import zlib
from typing import TYPE_CHECKING, Any, Final, Protocol

import attrs

import systemflow as sf
from systemflow.state import RunRecord, RunStatus, SqlStateStore

if TYPE_CHECKING:
    from collections.abc import Sequence

    from systemflow.state import Event, StateStore

NAME: Final = "invoice-approval"
DECISION: Final = "decision"  # the signal's name
MANAGER_LIMIT_CENTS: Final = 500_000  # a department manager approves up to 5,000.00
SCRIPT: Final = "python examples/invoice_approval.py"

APPROVED: Final = "approved"
REJECTED: Final = "rejected"
AWAITING: Final = "awaiting approval"


# --- The invoice, and what the flow makes of it ----------------------------------------


@attrs.frozen
class Invoice:
    """The submitted invoice: the run's input."""

    invoice_id: str
    vendor: str
    department: str
    amount_cents: int
    currency: str = "EUR"
    submitted_by: str = "accounts payable"


@attrs.frozen
class Check:
    """The result of one check; the approver check's ``detail`` is the approver's name."""

    passed: bool
    detail: str


@attrs.frozen
class Decision:
    """The payload of the ``decision`` signal: approve (``approved=True``) or reject."""

    approved: bool = attrs.field(validator=attrs.validators.instance_of(bool))
    by: str = attrs.field(validator=attrs.validators.instance_of(str))
    comment: str = attrs.field(default="", validator=attrs.validators.instance_of(str))


@attrs.frozen
class ScheduledPayment:
    payment_id: str
    amount_cents: int
    vendor: str


@attrs.frozen
class InvoiceCase:
    """
    The invoice's working record while the flow runs.

    ``open_invoice`` creates it; the ``Assign`` nodes fill in the checks, the
    decision and the payment, one stage at a time.
    """

    invoice: Invoice
    checks: dict[str, Check] = attrs.field(factory=dict)
    decision: Decision | None = None
    payment: ScheduledPayment | None = None

    @property
    def approver(self) -> str:
        check = self.checks.get("approver")
        if check is None or not check.passed:
            msg = f"invoice {self.invoice.invoice_id} has no approver"
            raise RuntimeError(msg)
        return check.detail


@attrs.frozen
class InvoiceOutcome:
    """What the flow returns: the run's output."""

    invoice_id: str
    status: str  # APPROVED or REJECTED
    reason: str
    decided_by: str
    payment_id: str | None = None


class InvalidInvoiceError(ValueError):
    """The invoice itself is wrong; nothing was checked."""


class UsageError(Exception):
    """A command was given something it cannot use; nothing was changed."""


def money(cents: int, currency: str = "EUR") -> str:
    return f"{cents / 100:,.2f} {currency}"


# --- The services the flow needs ----------------------------------------------------------


class VendorRegistry(Protocol):
    async def is_registered(self, vendor: str) -> bool: ...


class Budgets(Protocol):
    async def remaining(self, department: str) -> int: ...


class Directory(Protocol):
    async def approver_for(self, department: str, amount_cents: int) -> str | None: ...


class Notifier(Protocol):
    async def notify(self, to: str, message: str, *, idempotency_key: str) -> None: ...


class Ledger(Protocol):
    async def set_status(self, invoice_id: str, status: str, *, idempotency_key: str) -> None: ...


class Payments(Protocol):
    async def schedule(self, invoice: Invoice, *, idempotency_key: str) -> ScheduledPayment: ...


# --- In-process fakes of those services ------------------------------------------------------
#
# A new process gets new fakes: anything a later process needs comes from the
# run's history, not from them. Ids are made from the idempotency key, so a
# repeated request gets the same answer in any process.

VENDORS: Final = frozenset({"Acme Office Supplies", "Globex Logistics", "Initech Software"})
BUDGETS: Final = {"facilities": 1_000_000, "engineering": 5_000_000, "marketing": 200_000}
MANAGERS: Final = {"facilities": "Tom Baker", "engineering": "Lena Park", "marketing": "Sam Rivera"}
FINANCE_DIRECTOR: Final = "Maria Garcia"


def _say(service: str, text: str) -> None:
    print(f"    [{service}] {text}")


def _code(text: str) -> str:
    return f"{zlib.crc32(text.encode()):08X}"


@attrs.define
class FakeVendors:
    asked: list[str] = attrs.field(factory=list)

    async def is_registered(self, vendor: str) -> bool:
        self.asked.append(vendor)
        known = vendor in VENDORS
        _say("vendors", f"{vendor}: {'registered' if known else 'unknown'}")
        return known


@attrs.define
class FakeBudgets:
    budgets: dict[str, int] = attrs.field(factory=lambda: dict(BUDGETS))

    async def remaining(self, department: str) -> int:
        left = self.budgets.get(department, 0)
        _say("budgets", f"{department}: {money(left)} left")
        return left


@attrs.define
class FakeDirectory:
    async def approver_for(self, department: str, amount_cents: int) -> str | None:
        manager = MANAGERS.get(department)
        approver = FINANCE_DIRECTOR if amount_cents > MANAGER_LIMIT_CENTS else manager
        if manager is None:  # no such department: nobody may approve
            approver = None
        _say("directory", f"{money(amount_cents)} in {department}: approver {approver}")
        return approver


@attrs.define
class FakeNotifier:
    sent: list[tuple[str, str]] = attrs.field(factory=list)
    _keys: set[str] = attrs.field(factory=set, repr=False)

    async def notify(self, to: str, message: str, *, idempotency_key: str) -> None:
        if idempotency_key in self._keys:  # a repeated request: one message
            return
        self._keys.add(idempotency_key)
        self.sent.append((to, message))
        _say("notify", f"to {to}: {message}")


@attrs.define
class FakeLedger:
    statuses: dict[str, str] = attrs.field(factory=dict)

    async def set_status(self, invoice_id: str, status: str, *, idempotency_key: str) -> None:
        del idempotency_key  # setting a status twice is harmless: idempotent by nature
        self.statuses[invoice_id] = status
        _say("ledger", f"{invoice_id} is {status}")


@attrs.define
class FakePayments:
    scheduled: list[ScheduledPayment] = attrs.field(factory=list)
    _by_key: dict[str, ScheduledPayment] = attrs.field(factory=dict, repr=False)

    async def schedule(self, invoice: Invoice, *, idempotency_key: str) -> ScheduledPayment:
        if idempotency_key in self._by_key:  # a repeated request: pay only once
            return self._by_key[idempotency_key]
        payment = ScheduledPayment(
            f"PAY-{_code(idempotency_key)}", invoice.amount_cents, invoice.vendor
        )
        self._by_key[idempotency_key] = payment
        self.scheduled.append(payment)
        amount = money(payment.amount_cents)
        _say("payments", f"{amount} to {invoice.vendor} -> {payment.payment_id}")
        return payment


@attrs.frozen
class Fakes:
    """The fake services of one process."""

    vendors: FakeVendors = attrs.field(factory=FakeVendors)
    budgets: FakeBudgets = attrs.field(factory=FakeBudgets)
    directory: FakeDirectory = attrs.field(factory=FakeDirectory)
    notifier: FakeNotifier = attrs.field(factory=FakeNotifier)
    ledger: FakeLedger = attrs.field(factory=FakeLedger)
    payments: FakePayments = attrs.field(factory=FakePayments)

    @property
    def services(self) -> dict[str, object]:
        """What the steps find in ``ctx.services``: each fake, under its field's name."""
        return attrs.asdict(self, recurse=False)


def make_services() -> Fakes:
    """Return fresh fakes."""
    return Fakes()


# --- The steps, predicates and the wait ---------------------------------------------------------
#
# Step outputs are written to the run's history, and read back as the function's
# return annotation when the run is resumed: they must be storable (attrs
# classes, dicts, str, ...), and the annotations resolvable at run time.


@sf.step(name="open_invoice", inline=True)
def open_invoice(invoice: Invoice) -> InvoiceCase:
    """Refuse a malformed invoice, and open the case."""
    problems = []
    if not invoice.invoice_id.strip():
        problems.append("the invoice needs an id")
    if invoice.amount_cents < 1:
        problems.append("the amount must be positive")
    if problems:
        raise InvalidInvoiceError(f"invoice {invoice.invoice_id!r}: {'; '.join(problems)}")
    return InvoiceCase(invoice)


@sf.step
async def check_invoice(ctx: sf.FlowContext, case: InvoiceCase) -> Check:
    vendors: VendorRegistry = ctx.services["vendors"]
    vendor = case.invoice.vendor
    if await vendors.is_registered(vendor):
        return Check(passed=True, detail=f"{vendor} is a registered vendor")
    return Check(passed=False, detail=f"{vendor} is not a registered vendor")


@sf.step
async def check_budget(ctx: sf.FlowContext, case: InvoiceCase) -> Check:
    budgets: Budgets = ctx.services["budgets"]
    invoice = case.invoice
    left = await budgets.remaining(invoice.department)
    detail = f"{money(left)} left in {invoice.department}, {money(invoice.amount_cents)} asked"
    return Check(passed=left >= invoice.amount_cents, detail=detail)


@sf.step
async def find_approver(ctx: sf.FlowContext, case: InvoiceCase) -> Check:
    directory: Directory = ctx.services["directory"]
    invoice = case.invoice
    approver = await directory.approver_for(invoice.department, invoice.amount_cents)
    if approver is None:
        return Check(passed=False, detail=f"nobody may approve for {invoice.department}")
    return Check(passed=True, detail=approver)


# The three checks need nothing from each other: they run at the same time.
CHECKS: Final = sf.Parallel(invoice=check_invoice, budget=check_budget, approver=find_approver)


def checks_passed(case: InvoiceCase) -> bool:
    return all(check.passed for check in case.checks.values())


@sf.step(name="request_approval")
async def request_approval(ctx: sf.FlowContext, case: InvoiceCase) -> InvoiceCase:
    """Ask the approver for a decision; the key makes a repeated request send one message."""
    notifier: Notifier = ctx.services["notifier"]
    ledger: Ledger = ctx.services["ledger"]
    invoice = case.invoice
    message = (
        f"please approve or reject {invoice.invoice_id}: "
        f"{money(invoice.amount_cents, invoice.currency)} to {invoice.vendor}"
    )
    await notifier.notify(case.approver, message, idempotency_key=ctx.idempotency_key)
    await ledger.set_status(invoice.invoice_id, AWAITING, idempotency_key=ctx.idempotency_key)
    return case


def is_approved(case: InvoiceCase) -> bool:
    return case.decision is not None and case.decision.approved


@sf.step
async def schedule_payment(ctx: sf.FlowContext, case: InvoiceCase) -> ScheduledPayment:
    """Schedule the payment; the idempotency key makes a repeated request pay once."""
    payments: Payments = ctx.services["payments"]
    return await payments.schedule(case.invoice, idempotency_key=ctx.idempotency_key)


def _opinion(decision: Decision) -> str:
    return f"{decision.by}: {decision.comment}" if decision.comment else decision.by


async def close_case(
    ctx: sf.FlowContext, case: InvoiceCase, status: str, *, reason: str, decided_by: str
) -> InvoiceOutcome:
    """Record the invoice's final status in the ledger, and return the run's output."""
    ledger: Ledger = ctx.services["ledger"]
    await ledger.set_status(case.invoice.invoice_id, status, idempotency_key=ctx.idempotency_key)
    payment_id = None if case.payment is None else case.payment.payment_id
    return InvoiceOutcome(
        case.invoice.invoice_id, status, reason, decided_by=decided_by, payment_id=payment_id
    )


def _decision(case: InvoiceCase) -> Decision:
    if case.decision is None:
        msg = "an invoice is approved or rejected by a decision"
        raise RuntimeError(msg)
    return case.decision


@sf.step(name="approved")
async def approved(ctx: sf.FlowContext, case: InvoiceCase) -> InvoiceOutcome:
    decision = _decision(case)
    if case.payment is None:
        msg = "an approved invoice is paid first"
        raise RuntimeError(msg)
    reason = f"approved by {_opinion(decision)}"
    return await close_case(ctx, case, APPROVED, reason=reason, decided_by=decision.by)


@sf.step(name="reject")
async def reject(ctx: sf.FlowContext, case: InvoiceCase) -> InvoiceOutcome:
    decision = _decision(case)
    reason = f"rejected by {_opinion(decision)}"
    return await close_case(ctx, case, REJECTED, reason=reason, decided_by=decision.by)


@sf.step(name="auto_reject")
async def auto_reject(ctx: sf.FlowContext, case: InvoiceCase) -> InvoiceOutcome:
    """A check failed: reject the invoice without asking anybody."""
    failed = [f"{name}: {check.detail}" for name, check in case.checks.items() if not check.passed]
    reason = "failed checks: " + "; ".join(failed)
    return await close_case(ctx, case, REJECTED, reason=reason, decided_by="the checks")


def build_flow() -> sf.Flow[Invoice, InvoiceOutcome]:
    """Return the invoice approval flow: a tree of the nodes above."""
    return sf.Sequence(
        open_invoice,
        sf.Assign(checks=CHECKS, name="review"),
        sf.Conditional(
            checks_passed,
            sf.Sequence(
                request_approval,
                sf.Assign(
                    decision=sf.WaitForSignal(DECISION, payload_type=Decision), name="awaiting"
                ),
                sf.Conditional(
                    is_approved,
                    sf.Sequence(
                        sf.Assign(payment=schedule_payment, name="pay"),
                        approved,
                        name="approve",
                    ),
                    otherwise=reject,
                    name="outcome",
                ),
                name="approval",
            ),
            otherwise=auto_reject,
            name="route",
        ),
    )


def build(store: StateStore) -> sf.Stateful:
    """Return the durable invoice approval flow, its runs kept in ``store``."""
    return sf.Stateful(build_flow(), store=store, name=NAME)


def decision_payload(verdict: str, by: str, comment: str = "") -> dict[str, Any]:
    """The ``decision`` signal's payload for ``approve`` or ``reject``."""
    if verdict not in {"approve", "reject"}:
        msg = f"a decision is approve or reject, not {verdict!r}"
        raise UsageError(msg)
    if not by.strip():
        msg = "a decision needs the name of who made it"
        raise UsageError(msg)
    return attrs.asdict(Decision(approved=verdict == "approve", by=by, comment=comment))


# --- Telling what a run is doing ----------------------------------------------------------


def path_text(path: sf.Path | None) -> str:
    if path is None:
        return ""
    return "/".join(map(str, path)) or "<root>"


def _untagged(data: Any) -> Any:
    # Stored attrs instances carry a "$type" tag; a person reading does not need it.
    if isinstance(data, dict):
        return {k: _untagged(v) for k, v in data.items() if k != "$type"}
    if isinstance(data, list):
        return [_untagged(v) for v in data]
    return data


def _short(data: Any, width: int = 60) -> str:
    text = json.dumps(_untagged(data), separators=(", ", ": "))
    return text if len(text) <= width else text[: width - 3] + "..."


def checks_of(history: Sequence[Event]) -> dict[str, Check]:
    """The checks a run recorded, by name, read back from its history."""
    found = {}
    for event in history:
        path = event.path or ()
        if event.kind == "step" and path[:2] == ("review", "checks") and event.data is not None:
            data = json.loads(event.data)
            found[str(path[2])] = Check(passed=data["passed"], detail=data["detail"])
    return found


def timeline(history: Sequence[Event]) -> list[str]:
    """The run's history, one line per event."""
    width = max((len(path_text(event.path)) for event in history), default=0)
    lines = []
    for number, event in enumerate(history, start=1):
        data = "" if event.data is None else _short(json.loads(event.data), 40)
        if event.kind == "started":
            data = ""  # the input and the tree's shape: long, and shown above
        row = f"    {number:>2}  {event.kind:<10}  {path_text(event.path):<{width}}  {data}"
        lines.append(row.rstrip())
    return lines


def report(record: RunRecord, history: Sequence[Event]) -> list[str]:
    """A run's status, its checks, and what it waits for or how it ended."""
    lines = [f"run id:      {record.id}", f"status:      {record.status.value}"]
    for name, check in checks_of(history).items():
        verdict = "ok    " if check.passed else "FAILED"
        lines.append(f"check:       {name:<8} {verdict}  {check.detail}")
    if record.status is RunStatus.PAUSED:
        lines.append(f"waiting at:  {path_text(record.current_path)} for the signal {DECISION!r}")
    outcome = record.output
    if isinstance(outcome, InvoiceOutcome):
        lines.append(f"outcome:     {outcome.status.upper()}: {outcome.reason}")
        if outcome.payment_id is not None:
            lines.append(f"payment:     {outcome.payment_id}")
    if record.error is not None:
        lines.append(f"error:       {record.error}")
    return lines


def next_steps(record: RunRecord, history: Sequence[Event]) -> list[str]:
    """The commands that move a paused run on."""
    if record.status is not RunStatus.PAUSED:
        return []
    approver = checks_of(history)["approver"].detail
    by = json.dumps(approver)
    return [
        f"next:        {SCRIPT} signal {record.id} approve --by {by}",
        f"   or:       {SCRIPT} signal {record.id} reject --by {by} --comment 'why'",
    ]


# --- The command line ------------------------------------------------------------------------


async def print_run(
    flow: sf.Stateful, run_id: str, *, indent: str = "", commands: bool = True
) -> None:
    """Print where a run stands; with ``commands``, the commands that move it on."""
    record = await flow.get(run_id)
    history = await flow.store.history(run_id)
    lines = report(record, history) + (next_steps(record, history) if commands else [])
    for line in lines:
        print(f"{indent}{line}")


async def submit(
    flow: sf.Stateful, invoice: Invoice, *, run_id: str | None = None, indent: str = ""
) -> str:
    """Start a run for the invoice; return the run's id."""
    print(
        f"{indent}Invoice {invoice.invoice_id}: {money(invoice.amount_cents)} "
        f"from {invoice.vendor} ({invoice.department})"
    )
    record = await flow.start(invoice, run_id=run_id, services=make_services().services)
    return record.id


async def decide(
    flow: sf.Stateful, run_id: str, verdict: str, by: str, comment: str = "", *, indent: str = ""
) -> None:
    """Deliver the decision, and carry the run on at once."""
    payload = decision_payload(verdict, by, comment)
    await flow.store.signal(run_id, DECISION, payload)
    print(f"{indent}delivered:   {DECISION} {json.dumps(payload)}")
    await flow.resume(run_id, services=make_services().services)


async def cmd_start(flow: sf.Stateful, args: argparse.Namespace) -> None:
    invoice = Invoice(args.invoice, args.vendor, args.department, args.amount)
    await print_run(flow, await submit(flow, invoice, run_id=args.run_id))


async def cmd_signal(flow: sf.Stateful, args: argparse.Namespace) -> None:
    await decide(flow, args.run_id, args.verdict, args.by, args.comment)
    await print_run(flow, args.run_id)


async def cmd_show(flow: sf.Stateful, args: argparse.Namespace) -> None:
    record = await flow.get(args.run_id)
    history = await flow.store.history(args.run_id)
    print(f"invoice:     {record.input!r}")
    for line in report(record, history):
        print(line)
    print("history:")
    for line in timeline(history):
        print(line)


async def cmd_demo(flow: sf.Stateful, _args: argparse.Namespace) -> None:
    # The commands above, in one process; what they print is indented under each step.
    async def start(invoice: Invoice) -> str:
        run_id = await submit(flow, invoice, indent="    ")
        await print_run(flow, run_id, indent="    ", commands=False)
        return run_id

    async def signal(run_id: str, verdict: str, by: str, comment: str) -> None:
        await decide(flow, run_id, verdict, by, comment, indent="    ")
        await print_run(flow, run_id, indent="    ", commands=False)

    print("1. Acme's invoice for 4,200.00: the three checks pass (they run at the same")
    print("   time), the manager is asked, and the run waits for a decision.")
    first = await start(Invoice("INV-1001", "Acme Office Supplies", "facilities", 420_000))

    print("\n2. Tom Baker approves: the payment is scheduled and the invoice approved.")
    await signal(first, "approve", "Tom Baker", "office chairs, as ordered")

    print("\n3. Globex's invoice for 12,500.00 goes to the finance director, who rejects it.")
    second = await start(Invoice("INV-1002", "Globex Logistics", "engineering", 1_250_000))
    await signal(second, "reject", FINANCE_DIRECTOR, "a duplicate of INV-0998")

    print("\n4. Initech's invoice for 3,000.00 is over the marketing budget: rejected by the")
    print("   checks, without asking anybody.")
    await start(Invoice("INV-1003", "Initech Software", "marketing", 300_000))

    print("\n5. The first run's history: each check, the branch, the decision, the payment.")
    for line in timeline(await flow.store.history(first)):
        print(line)
    print(f"\nThe runs stay in the store: {SCRIPT} show {first}")


COMMANDS: Final = {"start": cmd_start, "signal": cmd_signal, "show": cmd_show, "demo": cmd_demo}


def _amount(text: str) -> int:
    """An amount like ``4200`` or ``4,200.50``, in cents."""
    try:
        value = decimal.Decimal(text.replace(",", ""))
    except decimal.InvalidOperation:
        value = decimal.Decimal(0)
    if not value > 0:
        msg = f"must be a positive amount, like 4200 or 4200.50, not {text}"
        raise argparse.ArgumentTypeError(msg)
    return int(value * 100)


def make_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db",
        metavar="URL",
        help="where runs are kept (default: systemflow.sqlite3 in the working directory)",
    )
    parser = argparse.ArgumentParser(
        description="A durable invoice approval flow, one command per process.",
        epilog="Without a command: demo.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    start = commands.add_parser("start", parents=[common], help="submit an invoice")
    start.add_argument("--invoice", required=True, help="the invoice's id, e.g. INV-1001")
    start.add_argument("--vendor", required=True, help='e.g. "Acme Office Supplies"')
    start.add_argument("--department", required=True, help="e.g. facilities")
    start.add_argument("--amount", required=True, type=_amount, help="e.g. 4200.00")
    start.add_argument("--run-id", help="the run's id (default: a new UUIDv7)")
    signal = commands.add_parser(
        "signal", parents=[common], help="approve or reject, and carry the run on"
    )
    signal.add_argument("run_id", metavar="RUN_ID")
    signal.add_argument("verdict", choices=("approve", "reject"))
    signal.add_argument("--by", required=True, help="who decides")
    signal.add_argument("--comment", default="", help="why")
    show = commands.add_parser("show", parents=[common], help="a run and its history")
    show.add_argument("run_id", metavar="RUN_ID")
    commands.add_parser("demo", parents=[common], help="the whole story in one process")
    return parser


async def run_command(args: argparse.Namespace) -> None:
    store = SqlStateStore(args.db)
    try:
        await COMMANDS[args.command](build(store), args)
    finally:
        await store.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # no command: the demo
        args = parser.parse_args(["demo"])
    try:
        asyncio.run(run_command(args))
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (sf.RunNotFound, sf.RunFinished, sf.RunLocked, sf.RunExists) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
