"""
Order processing: the OrderProcessingFlow of the System Flow design, as a tree.

In the Go original (the design's seed 000) the flow is one long method, and
every error branch undoes the earlier steps by hand. Here the same business
flow is a tree of small flow objects::

    validate
    check_inventory
    saga (Compensatable)              undone newest first if anything in it fails
        reservation: reserve          undo: release the reservation
        payment:     charge_payment   undo: refund        (flaky gateway: retried)
        label:       create_label
    publish_order_created             critical=False: a failure is logged, not fatal
    finish                            builds the output

``Compensatable`` runs the undos when a later step fails, so there are no
hand-written error branches. ``Assign`` keeps the order's working record
flowing through the saga and stores each step's result on it (the
reservation, the payment, the label), so later steps, the undos and the
final output can use them.

The services are in-process fakes: they print what they do and record it,
so the script (and its test) can show what happened and what was undone.

Run it from the repository root::

    .venv/bin/python examples/order_processing.py
"""

from __future__ import annotations

import itertools
import logging
import sys
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import structlog

import systemflow as sf

if TYPE_CHECKING:
    from collections.abc import Iterator, MutableMapping

    from structlog.typing import EventDict, WrappedLogger


# --- The order, and what the flow makes of it --------------------------------


@attrs.frozen
class OrderInput:
    """What the caller asks for (the Go ``ProcessOrderInput``)."""

    order_id: str
    customer_id: str
    product_id: str
    quantity: int
    amount_cents: int
    currency: str
    payment_source: str
    shipping_address: str


@attrs.frozen
class Reservation:
    id: str
    product_id: str
    quantity: int


@attrs.frozen
class Payment:
    id: str
    amount_cents: int
    currency: str


@attrs.frozen
class ShippingLabel:
    id: str
    address: str


@attrs.frozen
class OrderState:
    """
    The order's working record while the flow runs.

    ``validate`` creates it; the ``Assign`` in the saga fills in the other
    fields, one step at a time. They are optional because they are empty
    until then.
    """

    order: OrderInput
    reservation: Reservation | None = None
    payment: Payment | None = None
    label: ShippingLabel | None = None

    def fulfilled(self) -> tuple[Reservation, Payment, ShippingLabel]:
        """Return the reservation, payment and label; the saga must have run."""
        if self.reservation is None or self.payment is None or self.label is None:
            msg = f"order {self.order.order_id} has not been through the saga yet"
            raise RuntimeError(msg)
        return self.reservation, self.payment, self.label


@attrs.frozen
class OrderOutput:
    """What the flow returns (the Go ``ProcessOrderOutput``)."""

    order_id: str
    reservation_id: str
    payment_id: str
    shipping_id: str
    status: str = "processed"


# What the services take.


@attrs.frozen
class ReservationRequest:
    product_id: str
    quantity: int


@attrs.frozen
class PaymentRequest:
    amount_cents: int
    currency: str
    source: str


@attrs.frozen
class ShippingRequest:
    address: str
    product_id: str
    quantity: int


@attrs.frozen
class OrderCreated:
    order_id: str
    customer_id: str
    reservation_id: str
    payment_id: str
    shipping_id: str


class InvalidOrderError(ValueError):
    """The order itself is wrong; nothing was touched."""


class OutOfStockError(Exception):
    """Not enough stock for the order."""


class GatewayUnavailableError(ConnectionError):
    """The payment gateway did not answer; worth another try."""


class CarrierUnavailableError(Exception):
    """The shipping carrier refused to create a label."""


class EventBusUnavailableError(ConnectionError):
    """The event bus could not take the event."""


def money(cents: int, currency: str) -> str:
    return f"{cents / 100:.2f} {currency}"


# --- The services the flow needs (the Go interfaces) --------------------------


class InventoryService(Protocol):
    async def check_availability(self, product_id: str, quantity: int) -> bool: ...
    async def reserve(self, request: ReservationRequest) -> Reservation: ...
    async def release(self, reservation: Reservation) -> None: ...


class PaymentService(Protocol):
    async def charge(self, request: PaymentRequest, *, idempotency_key: str) -> Payment: ...
    async def refund(self, payment: Payment) -> None: ...


class ShippingService(Protocol):
    async def create_label(self, request: ShippingRequest) -> ShippingLabel: ...


class EventPublisher(Protocol):
    async def publish(self, event: OrderCreated) -> None: ...


# --- In-process fakes of those services ----------------------------------------
#
# Each fake prints what it does, keeps its own records (reserved, charged, ...),
# and appends to a ledger shared by all of them, so the order of events across
# services can be checked.


def _say(service: str, text: str) -> None:
    print(f"    [{service}] {text}")


def _counter() -> Iterator[int]:
    return itertools.count(1)


@attrs.define
class FakeInventory:
    ledger: list[str]
    stock: dict[str, int]
    reserved: list[Reservation] = attrs.field(factory=list)
    released: list[Reservation] = attrs.field(factory=list)
    _ids: Iterator[int] = attrs.field(factory=_counter, repr=False)

    async def check_availability(self, product_id: str, quantity: int) -> bool:
        available = self.stock.get(product_id, 0)
        _say("inventory", f"{product_id}: {available} in stock, {quantity} wanted")
        return available >= quantity

    async def reserve(self, request: ReservationRequest) -> Reservation:
        reservation = Reservation(f"R-{next(self._ids)}", request.product_id, request.quantity)
        self.stock[request.product_id] -= request.quantity
        self.reserved.append(reservation)
        self.ledger.append(f"inventory.reserve {reservation.id}")
        _say("inventory", f"reserved {request.quantity} x {request.product_id} -> {reservation.id}")
        return reservation

    async def release(self, reservation: Reservation) -> None:
        self.stock[reservation.product_id] += reservation.quantity
        self.released.append(reservation)
        self.ledger.append(f"inventory.release {reservation.id}")
        _say("inventory", f"released {reservation.id}: {reservation.quantity} back in stock")


@attrs.define
class FakePayments:
    ledger: list[str]
    flaky_attempts: int = 0  # how many charge attempts time out before one goes through
    attempts: int = 0
    charged: list[Payment] = attrs.field(factory=list)
    refunded: list[Payment] = attrs.field(factory=list)
    _by_key: dict[str, Payment] = attrs.field(factory=dict, repr=False)
    _ids: Iterator[int] = attrs.field(factory=_counter, repr=False)

    async def charge(self, request: PaymentRequest, *, idempotency_key: str) -> Payment:
        self.attempts += 1
        if self.attempts <= self.flaky_attempts:
            _say("payments", f"gateway did not answer (attempt {self.attempts})")
            raise GatewayUnavailableError("payment gateway did not answer")
        if idempotency_key in self._by_key:  # a repeated request: charge only once
            return self._by_key[idempotency_key]
        payment = Payment(f"P-{next(self._ids)}", request.amount_cents, request.currency)
        self._by_key[idempotency_key] = payment
        self.charged.append(payment)
        self.ledger.append(f"payments.charge {payment.id}")
        amount = money(request.amount_cents, request.currency)
        _say("payments", f"charged {amount} to {request.source} -> {payment.id}")
        return payment

    async def refund(self, payment: Payment) -> None:
        self.refunded.append(payment)
        self.ledger.append(f"payments.refund {payment.id}")
        _say("payments", f"refunded {payment.id}: {money(payment.amount_cents, payment.currency)}")


@attrs.define
class FakeShipping:
    ledger: list[str]
    down: bool = False
    labels: list[ShippingLabel] = attrs.field(factory=list)
    _ids: Iterator[int] = attrs.field(factory=_counter, repr=False)

    async def create_label(self, request: ShippingRequest) -> ShippingLabel:
        if self.down:
            self.ledger.append("shipping.create_label failed")
            _say("shipping", "the carrier answered 503 Service Unavailable")
            raise CarrierUnavailableError("carrier answered 503 Service Unavailable")
        label = ShippingLabel(f"L-{next(self._ids)}", request.address)
        self.labels.append(label)
        self.ledger.append(f"shipping.create_label {label.id}")
        _say("shipping", f"label {label.id} to {request.address!r}")
        return label


@attrs.define
class FakeEventBus:
    ledger: list[str]
    down: bool = False
    published: list[OrderCreated] = attrs.field(factory=list)

    async def publish(self, event: OrderCreated) -> None:
        if self.down:
            self.ledger.append("events.publish failed")
            _say("events", "the event bus is unreachable")
            raise EventBusUnavailableError("event bus unreachable")
        self.published.append(event)
        self.ledger.append(f"events.publish {event.order_id}")
        _say("events", f"published OrderCreated for {event.order_id}")


@attrs.frozen
class Fakes:
    """The fake services of one scenario, and the ledger they share."""

    inventory: FakeInventory
    payments: FakePayments
    shipping: FakeShipping
    events: FakeEventBus
    ledger: list[str]

    @property
    def services(self) -> dict[str, object]:
        """What the steps find in ``ctx.services``, by name."""
        return {
            "inventory": self.inventory,
            "payments": self.payments,
            "shipping": self.shipping,
            "events": self.events,
        }


def make_services(
    *,
    flaky_payment_attempts: int = 1,
    shipping_down: bool = False,
    event_bus_down: bool = False,
    stock: MutableMapping[str, int] | None = None,
) -> Fakes:
    """
    Return fresh fakes: 10 of SKU-42 in stock, a gateway that fails once by default.
    """
    ledger: list[str] = []
    return Fakes(
        inventory=FakeInventory(ledger, dict(stock) if stock is not None else {"SKU-42": 10}),
        payments=FakePayments(ledger, flaky_attempts=flaky_payment_attempts),
        shipping=FakeShipping(ledger, down=shipping_down),
        events=FakeEventBus(ledger, down=event_bus_down),
        ledger=ledger,
    )


# --- The steps ------------------------------------------------------------------
#
# A step takes (input) or (ctx, input); ctx.services holds the services. Cheap,
# pure steps run inline; the others are coroutines and are awaited.


@sf.step(name="validate", inline=True)
def validate(order: OrderInput) -> OrderState:
    """Refuse a malformed order, and open the order's working record."""
    problems = []
    if order.quantity < 1:
        problems.append("quantity must be at least 1")
    if order.amount_cents < 1:
        problems.append("amount must be positive")
    if not order.shipping_address.strip():
        problems.append("a shipping address is required")
    if problems:
        raise InvalidOrderError(f"order {order.order_id}: {'; '.join(problems)}")
    return OrderState(order=order)


@sf.step(name="check_inventory")
async def check_inventory(ctx: sf.FlowContext, state: OrderState) -> OrderState:
    """Fail early, before anything is reserved, if the stock is short."""
    inventory: InventoryService = ctx.services["inventory"]
    order = state.order
    if not await inventory.check_availability(order.product_id, order.quantity):
        raise OutOfStockError(f"{order.product_id}: not enough stock for {order.quantity}")
    return state


@sf.step(name="reservation_request", inline=True)
def reservation_request(state: OrderState) -> ReservationRequest:
    return ReservationRequest(state.order.product_id, state.order.quantity)


# A declarative call: ``await ctx.services["inventory"].reserve(request)``. Its
# undo is another method of the same service, called with the reservation.
# ``output_type`` says what it returns, so a resumed durable run reads the
# journaled reservation back as a Reservation, not as JSON data.
reserve = sf.Call(
    "inventory", "reserve", compensate="release", output_type=Reservation, name="reserve"
)


async def refund_payment(ctx: sf.FlowContext, _state: OrderState, payment: Payment) -> None:
    """The undo of ``charge_payment``: it gets the step's input and output."""
    payments: PaymentService = ctx.services["payments"]
    await payments.refund(payment)


# The payment gateway is flaky: retry when it does not answer, at most three
# attempts in all, and give each attempt two seconds.
GATEWAY_RETRY = sf.RetryPolicy(
    max_attempts=3, initial_delay=0.05, retry_on=(GatewayUnavailableError,)
)


@sf.step(name="charge_payment", compensate=refund_payment, retry=GATEWAY_RETRY, timeout=2.0)
async def charge_payment(ctx: sf.FlowContext, state: OrderState) -> Payment:
    """Charge the customer; the idempotency key makes a repeated attempt charge once."""
    payments: PaymentService = ctx.services["payments"]
    order = state.order
    request = PaymentRequest(order.amount_cents, order.currency, order.payment_source)
    return await payments.charge(request, idempotency_key=ctx.idempotency_key)


@sf.step(name="create_shipping_label", timeout=5.0)
async def create_shipping_label(ctx: sf.FlowContext, state: OrderState) -> ShippingLabel:
    shipping: ShippingService = ctx.services["shipping"]
    order = state.order
    return await shipping.create_label(
        ShippingRequest(order.shipping_address, order.product_id, order.quantity)
    )


@sf.step(name="publish_order_created", critical=False)
async def publish_order_created(ctx: sf.FlowContext, state: OrderState) -> OrderState:
    """Tell the rest of the system; if that fails, the order still stands."""
    events: EventPublisher = ctx.services["events"]
    reservation, payment, label = state.fulfilled()
    order = state.order
    await events.publish(
        OrderCreated(order.order_id, order.customer_id, reservation.id, payment.id, label.id)
    )
    return state


@sf.step(name="finish", inline=True)
def finish(state: OrderState) -> OrderOutput:
    reservation, payment, label = state.fulfilled()
    return OrderOutput(state.order.order_id, reservation.id, payment.id, label.id)


def build_flow() -> sf.Flow[OrderInput, OrderOutput]:
    """Return the order processing flow: a tree of the steps above."""
    return sf.Instrumented(
        sf.Sequence(
            validate,
            check_inventory,
            sf.Compensatable(
                sf.Assign(
                    reservation=reservation_request >> reserve,
                    payment=charge_payment,
                    label=create_shipping_label,
                    name="fulfil",
                ),
                name="saga",
            ),
            publish_order_created,
            finish,
        ),
        name="order_processing",
    )


# --- The script ---------------------------------------------------------------


def _tidy(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    # systemflow logs an ignored (non-critical) failure with its exception; the
    # message already says what went wrong, so spare the reader the traceback.
    event.pop("exc_info", None)
    # Retry delays are random (jitter): show milliseconds, not 17 digits.
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in event.items()}


def configure_logging() -> None:
    """Readable console logs at INFO: systemflow's flow, retry and undo events."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            _tidy,
            structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty(), pad_event_to=34),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        cache_logger_on_first_use=True,
    )


def path_text(path: sf.Path) -> str:
    return "/".join(map(str, path)) or "<root>"


def print_tree(flow: sf.Flow[Any, Any]) -> None:
    print("The flow is a tree of nodes; each has a path, made of names (or indexes):")
    for path, node in sf.walk(flow):
        name = getattr(node, "name", None)
        kind = type(node).__name__ if name is None else f"{type(node).__name__} {name!r}"
        print(f"    {path_text(path):<42} {kind}")


def make_order(order_id: str) -> OrderInput:
    return OrderInput(
        order_id=order_id,
        customer_id="C-7",
        product_id="SKU-42",
        quantity=2,
        amount_cents=5998,
        currency="EUR",
        payment_source="card-4242",
        shipping_address="1 Main St, Springfield",
    )


def process(flow: sf.Flow[OrderInput, OrderOutput], order: OrderInput, fakes: Fakes) -> None:
    """Run one order, and print how it ended."""
    # A readable run id for the logs; without one each run gets a fresh UUIDv7.
    context = sf.FlowContext(services=fakes.services, run_id=f"run-{order.order_id}")
    order_text = money(order.amount_cents, order.currency)
    print(f"Order {order.order_id}: {order.quantity} x {order.product_id} for {order_text}")
    try:
        output = sf.run(flow, order, context=context)
    except sf.StepFailed as exc:
        print(f"=> FAILED at step {path_text(exc.path)}")
        print(f"   because: {type(exc.__cause__).__name__}: {exc.__cause__}")
        for note in getattr(exc, "__notes__", []):
            print(f"   {note}")
    else:
        print(f"=> OK: {output}")
    print(f"   ledger: {', '.join(fakes.ledger)}")


def main() -> None:
    configure_logging()
    flow = build_flow()
    print_tree(flow)

    print("\n1. A happy order (the payment gateway hiccups once; the retry handles it)")
    process(flow, make_order("A-1001"), make_services())

    print("\n2. Shipping fails: the saga refunds the payment and releases the stock")
    fakes = make_services(shipping_down=True)
    process(flow, make_order("A-1002"), fakes)
    print(f"   stock of SKU-42 is back to {fakes.inventory.stock['SKU-42']}")

    print("\n3. Publishing the event fails: logged, and the order still succeeds")
    process(flow, make_order("A-1003"), make_services(event_bus_down=True))


if __name__ == "__main__":
    main()
