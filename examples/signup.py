"""
Signup: a customer without a subscription must not remain.

The flow service of the design's seed 001 puts it this way: "signup requires
the subscription to be created, otherwise you end up with an account that has
access that's not making payments". Its signup flow is two RPCs, customer
then subscription, each with a rollback, and every step is an event in a
history that can be read back. Here the same flow is a tree::

    open_signup                         check the request
    signup (Compensatable)              a saga: a failure in it undoes what it did
        accounts (Assign)
            customer:      create_customer       undo: delete_customer
            subscription:  create_subscription   the billing provider: retried
                                                  when it times out, not when
                                                  the card is declined
    announce                            publish "customer.signed_up"; critical=False
    welcome_pack                        the flow's output

When the subscription cannot be created, ``Compensatable`` deletes the
customer that was just created, and the run fails with the billing error.

The run is durable (``Stateful``): its input, each step's outcome, the failure
and the undo are written to a SQLite file as they happen, and the script
prints each run's history from it. Each step passes ``ctx.idempotency_key``
(stable per run and step) to its service, so a step done again after a crash
creates nothing twice.

The services are in-process fakes that print what they do.

Run it from the repository root::

    .venv/bin/python examples/signup.py             # runs kept in ./systemflow.sqlite3
    .venv/bin/python examples/signup.py --db sqlite:////tmp/signup.sqlite3
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import sys
from typing import TYPE_CHECKING, Final, Protocol

import attrs
import structlog

import systemflow as sf
from systemflow.state import RunStatus, SqlStateStore

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from systemflow.state import Event, RunRecord, StateStore

NAME: Final = "signup"


# --- The request, and what the flow makes of it --------------------------------------


@attrs.frozen
class SignupRequest:
    """What the person asks for: the run's input."""

    email: str
    name: str
    plan: str
    card: str


@attrs.frozen
class Customer:
    id: str
    email: str
    name: str


@attrs.frozen
class Subscription:
    id: str
    customer_id: str
    plan: str


@attrs.frozen
class SignupState:
    """
    The signup's working record while the flow runs.

    ``open_signup`` creates it; the ``Assign`` in the saga fills in the
    customer and the subscription, in that order.
    """

    request: SignupRequest
    customer: Customer | None = None
    subscription: Subscription | None = None

    def done(self) -> tuple[Customer, Subscription]:
        """Return the customer and the subscription; the saga must have run."""
        if self.customer is None or self.subscription is None:
            msg = f"the signup of {self.request.email} has not been through the saga yet"
            raise RuntimeError(msg)
        return self.customer, self.subscription


@attrs.frozen
class SignedUp:
    """The event the rest of the system hears about."""

    customer_id: str
    subscription_id: str
    plan: str


@attrs.frozen
class WelcomePack:
    """What the flow returns."""

    customer_id: str
    subscription_id: str
    plan: str


PLANS: Final = ("basic", "pro")


class InvalidSignupError(ValueError):
    """The request itself is wrong; nothing was created."""


class CardDeclinedError(Exception):
    """The card was declined: trying again will not help."""


class BillingTimeoutError(ConnectionError):
    """The billing provider did not answer in time: worth another try."""


# --- The services the flow needs (the RPC endpoints of the seed) -------------------------


class Customers(Protocol):
    async def create(self, request: SignupRequest, *, idempotency_key: str) -> Customer: ...
    async def delete(self, customer: Customer) -> None: ...


class Subscriptions(Protocol):
    async def create(
        self, customer: Customer, plan: str, card: str, *, idempotency_key: str
    ) -> Subscription: ...


class Events(Protocol):
    async def publish(self, topic: str, event: SignedUp) -> None: ...


# --- In-process fakes of those services ---------------------------------------------------


def _say(service: str, text: str) -> None:
    print(f"    [{service}] {text}")


def _counter() -> Iterator[int]:
    return itertools.count(1)


@attrs.define
class FakeCustomers:
    customers: dict[str, Customer] = attrs.field(factory=dict)  # the live ones, by id
    deleted: list[Customer] = attrs.field(factory=list)
    _by_key: dict[str, Customer] = attrs.field(factory=dict, repr=False)
    _ids: Iterator[int] = attrs.field(factory=_counter, repr=False)

    async def create(self, request: SignupRequest, *, idempotency_key: str) -> Customer:
        if idempotency_key in self._by_key:  # a repeated request: the same customer
            return self._by_key[idempotency_key]
        customer = Customer(f"C-{next(self._ids)}", request.email, request.name)
        self.customers[customer.id] = customer
        self._by_key[idempotency_key] = customer
        _say("customers", f"created {customer.id} for {customer.email}")
        return customer

    async def delete(self, customer: Customer) -> None:
        self.customers.pop(customer.id, None)
        self.deleted.append(customer)
        _say("customers", f"deleted {customer.id}: no subscription, no account")


@attrs.define
class FakeSubscriptions:
    timeouts: int = 0  # how many attempts time out before the provider answers
    declined_cards: frozenset[str] = frozenset({"card-0002"})
    attempts: int = 0
    subscriptions: list[Subscription] = attrs.field(factory=list)
    _by_key: dict[str, Subscription] = attrs.field(factory=dict, repr=False)
    _ids: Iterator[int] = attrs.field(factory=_counter, repr=False)

    async def create(
        self, customer: Customer, plan: str, card: str, *, idempotency_key: str
    ) -> Subscription:
        self.attempts += 1
        if self.attempts <= self.timeouts:
            _say("billing", f"no answer in time (attempt {self.attempts})")
            raise BillingTimeoutError("the billing provider timed out")
        if card in self.declined_cards:
            _say("billing", f"{card} declined")
            raise CardDeclinedError(f"{card} was declined")
        if idempotency_key in self._by_key:  # a repeated request: the same subscription
            return self._by_key[idempotency_key]
        subscription = Subscription(f"S-{next(self._ids)}", customer.id, plan)
        self.subscriptions.append(subscription)
        self._by_key[idempotency_key] = subscription
        _say("billing", f"subscribed {customer.id} to {plan} -> {subscription.id}")
        return subscription


@attrs.define
class FakeEvents:
    published: list[tuple[str, SignedUp]] = attrs.field(factory=list)

    async def publish(self, topic: str, event: SignedUp) -> None:
        self.published.append((topic, event))
        _say("events", f"{topic} {event.customer_id} {event.plan}")


@attrs.frozen
class Fakes:
    """The fake services of one process."""

    customers: FakeCustomers = attrs.field(factory=FakeCustomers)
    subscriptions: FakeSubscriptions = attrs.field(factory=FakeSubscriptions)
    events: FakeEvents = attrs.field(factory=FakeEvents)

    @property
    def services(self) -> dict[str, object]:
        """What the steps find in ``ctx.services``: each fake, under its field's name."""
        return attrs.asdict(self, recurse=False)


def make_services(*, billing_timeouts: int = 0) -> Fakes:
    """Return fresh fakes; billing times out ``billing_timeouts`` times; card-0002 is declined."""
    return Fakes(subscriptions=FakeSubscriptions(timeouts=billing_timeouts))


# --- The steps ---------------------------------------------------------------------------
#
# Step outputs are stored in the run's history and read back by their return
# annotation: they are attrs classes, and the annotations resolve at run time.


@sf.step(name="open_signup", inline=True)
def open_signup(request: SignupRequest) -> SignupState:
    """Refuse a malformed request, and open the signup's working record."""
    problems = []
    if "@" not in request.email:
        problems.append(f"{request.email!r} is not an e-mail address")
    if request.plan not in PLANS:
        problems.append(f"no plan {request.plan!r} (there are {', '.join(PLANS)})")
    if problems:
        raise InvalidSignupError("; ".join(problems))
    return SignupState(request)


async def delete_customer(ctx: sf.FlowContext, _state: SignupState, customer: Customer) -> None:
    """The undo of ``create_customer``: it gets the step's input and output."""
    customers: Customers = ctx.services["customers"]
    await customers.delete(customer)


@sf.step(compensate=delete_customer)
async def create_customer(ctx: sf.FlowContext, state: SignupState) -> Customer:
    customers: Customers = ctx.services["customers"]
    return await customers.create(state.request, idempotency_key=ctx.idempotency_key)


# A timeout is worth another try; a declined card is not (retry_on leaves it out).
BILLING_RETRY: Final = sf.RetryPolicy(
    max_attempts=3, initial_delay=0.01, retry_on=BillingTimeoutError
)


@sf.step(retry=BILLING_RETRY)
async def create_subscription(ctx: sf.FlowContext, state: SignupState) -> Subscription:
    subscriptions: Subscriptions = ctx.services["subscriptions"]
    customer, request = state.customer, state.request
    if customer is None:
        msg = "a subscription is created for a customer"
        raise RuntimeError(msg)
    return await subscriptions.create(
        customer, request.plan, request.card, idempotency_key=ctx.idempotency_key
    )


@sf.step(name="announce", critical=False)
async def announce(ctx: sf.FlowContext, state: SignupState) -> SignupState:
    """Tell the rest of the system; if that fails, the signup still stands."""
    events: Events = ctx.services["events"]
    customer, subscription = state.done()
    await events.publish(
        "customer.signed_up", SignedUp(customer.id, subscription.id, subscription.plan)
    )
    return state


@sf.step(name="welcome_pack", inline=True)
def welcome_pack(state: SignupState) -> WelcomePack:
    customer, subscription = state.done()
    return WelcomePack(customer.id, subscription.id, subscription.plan)


def build_flow() -> sf.Flow[SignupRequest, WelcomePack]:
    """Return the signup flow: a tree of the steps above."""
    return sf.Sequence(
        open_signup,
        sf.Compensatable(
            sf.Assign(customer=create_customer, subscription=create_subscription, name="accounts"),
            name="signup",
        ),
        announce,
        welcome_pack,
    )


def build(store: StateStore) -> sf.Stateful:
    """Return the durable signup flow, its runs kept in ``store``."""
    return sf.Stateful(build_flow(), store=store, name=NAME)


# --- The script ---------------------------------------------------------------------------


def path_text(path: sf.Path | None) -> str:
    if path is None:
        return ""
    return "/".join(map(str, path)) or "<root>"


def history_lines(history: Sequence[Event]) -> list[str]:
    """The run's history, one line per event: its kind, its node, and an error's type."""
    lines = []
    for number, event in enumerate(history, start=1):
        what = ""
        if event.kind in {"failed", "run_failed"} and event.data is not None:
            what = json.loads(event.data).get("cause_type") or ""
        lines.append(f"      {number:>2}  {event.kind:<11} {path_text(event.path):<36} {what}")
    return [line.rstrip() for line in lines]


async def sign_up(flow: sf.Stateful, request: SignupRequest, fakes: Fakes) -> RunRecord:
    """Run one signup, and print how it ended and its history."""
    print(f"{request.name} <{request.email}> signs up for {request.plan} with {request.card}")
    record = await flow.start(request, services=fakes.services)
    if record.status is RunStatus.COMPLETED:
        pack = record.output
        print(f"=> SIGNED UP: customer {pack.customer_id}, subscription {pack.subscription_id}")
    else:
        print(f"=> {record.status.value.upper()}: {record.error}")
    live = ", ".join(sorted(fakes.customers.customers)) or "none"
    print(f"   customers left: {live}")
    print(f"   run {record.id}, its history:")
    for line in history_lines(await flow.store.history(record.id)):
        print(line)
    return record


def configure_logging() -> None:
    """systemflow's own log lines (retries, undos) on standard output, without run ids."""

    def render(_logger: object, _method: str, event: structlog.typing.EventDict) -> str:
        keep = {k: event[k] for k in ("step", "attempt", "error") if k in event}
        details = ", ".join(f"{key}={value}" for key, value in keep.items())
        return f"    ({event['event']} at {event['path']}: {details})"

    structlog.configure(
        processors=[render],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )


async def run_demo(db: str | None) -> None:
    store = SqlStateStore(db)
    flow = build(store)
    try:
        print("1. Ann signs up; the billing provider times out once, and the retry goes through")
        await sign_up(
            flow,
            SignupRequest("ann@example.org", "Ann", "pro", "card-0001"),
            make_services(billing_timeouts=1),
        )
        print("\n2. Bob's card is declined: no retry, and his new customer is deleted")
        await sign_up(
            flow, SignupRequest("bob@example.org", "Bob", "basic", "card-0002"), make_services()
        )
    finally:
        await store.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A durable signup flow, twice.")
    parser.add_argument(
        "--db",
        metavar="URL",
        help="where runs are kept (default: systemflow.sqlite3 in the working directory)",
    )
    args = parser.parse_args(argv)
    configure_logging()
    asyncio.run(run_demo(args.db))


if __name__ == "__main__":
    main()
