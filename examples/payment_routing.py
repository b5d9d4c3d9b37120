"""
Payment routing: premium and regular customers take different branches.

The design's seed 000 builds ``NewPaymentFlow(premiumFlow, regularFlow)``: a
conditional flow whose condition is ``req.User.IsPremium``. Here it is a
``Conditional`` whose two branches are small trees of their own::

    payment (Conditional: is_premium?)
        premium (Sequence)              trusted: no screening, no fee
            premium_terms               the priority lane
            charge                      the gateway (idempotency key)
            receipt
        regular (Sequence)
            screen                      the fraud service; a high score stops here
            regular_terms               a 1.5 % fee (at least 0.30), the standard lane
            charge
            receipt

Only the chosen branch runs: a premium payment never reaches the fraud
service. ``charge`` and ``receipt`` are the same nodes in both branches; each
sits at its own path (``premium/charge``, ``regular/charge``), which is what
errors, logs and idempotency keys name.

``build_flow`` takes the two branches as arguments, like the Go constructor;
the defaults are the ones above. The services are in-process fakes that print
what they do.

Run it from the repository root::

    .venv/bin/python examples/payment_routing.py
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Protocol

import attrs

import systemflow as sf

if TYPE_CHECKING:
    from collections.abc import Iterator

PREMIUM = "premium"
REGULAR = "regular"
FRAUD_LIMIT = 80  # a fraud score above this stops a regular payment


# --- The request, and what the flow makes of it ------------------------------------


@attrs.frozen
class Customer:
    id: str
    name: str
    is_premium: bool = False


@attrs.frozen
class PaymentRequest:
    """The flow's input (the Go ``PaymentRequest``)."""

    customer: Customer
    amount_cents: int
    currency: str
    card: str


@attrs.frozen
class Terms:
    """How a payment is charged: the fee, and the gateway's lane."""

    request: PaymentRequest
    route: str  # PREMIUM or REGULAR: the branch that set the terms
    fee_cents: int
    lane: str  # "priority" or "standard"
    payment: Payment | None = None


@attrs.frozen
class Payment:
    id: str
    total_cents: int
    lane: str


@attrs.frozen
class Receipt:
    """The flow's output."""

    payment_id: str
    customer_id: str
    route: str
    amount_cents: int
    fee_cents: int
    total_cents: int
    lane: str


class SuspectedFraudError(Exception):
    """The fraud service scored the payment too high; nothing was charged."""


def money(cents: int, currency: str) -> str:
    return f"{cents / 100:.2f} {currency}"


# --- The services the flow needs ---------------------------------------------------------


class FraudService(Protocol):
    async def score(self, request: PaymentRequest) -> int: ...


class Gateway(Protocol):
    async def charge(self, terms: Terms, *, idempotency_key: str) -> Payment: ...


# --- In-process fakes of those services ----------------------------------------------------


def _say(service: str, text: str) -> None:
    print(f"    [{service}] {text}")


def _counter() -> Iterator[int]:
    return itertools.count(1)


@attrs.define
class FakeFraud:
    risky_cards: frozenset[str] = frozenset({"card-6666"})
    screened: list[PaymentRequest] = attrs.field(factory=list)

    async def score(self, request: PaymentRequest) -> int:
        self.screened.append(request)
        score = 95 if request.card in self.risky_cards else 12
        _say("fraud", f"{request.card} for {request.customer.name}: score {score}")
        return score


@attrs.define
class FakeGateway:
    charged: list[Payment] = attrs.field(factory=list)
    _by_key: dict[str, Payment] = attrs.field(factory=dict, repr=False)
    _ids: Iterator[int] = attrs.field(factory=_counter, repr=False)

    async def charge(self, terms: Terms, *, idempotency_key: str) -> Payment:
        if idempotency_key in self._by_key:  # a repeated request: charge only once
            return self._by_key[idempotency_key]
        request = terms.request
        total = request.amount_cents + terms.fee_cents
        payment = Payment(f"P-{next(self._ids)}", total, terms.lane)
        self._by_key[idempotency_key] = payment
        self.charged.append(payment)
        _say(
            "gateway",
            f"charged {money(total, request.currency)} to {request.card} "
            f"in the {terms.lane} lane -> {payment.id}",
        )
        return payment


@attrs.frozen
class Fakes:
    """The fake services of one scenario."""

    fraud: FakeFraud = attrs.field(factory=FakeFraud)
    gateway: FakeGateway = attrs.field(factory=FakeGateway)

    @property
    def services(self) -> dict[str, object]:
        """What the steps find in ``ctx.services``: each fake, under its field's name."""
        return attrs.asdict(self, recurse=False)


def make_services() -> Fakes:
    """Return fresh fakes: the fraud service distrusts card-6666."""
    return Fakes()


# --- The steps ---------------------------------------------------------------------------


def is_premium(request: PaymentRequest) -> bool:
    """The condition of the Go original: ``req.User.IsPremium``."""
    return request.customer.is_premium


@sf.step(name="premium_terms", inline=True)
def premium_terms(request: PaymentRequest) -> Terms:
    return Terms(request, route=PREMIUM, fee_cents=0, lane="priority")


@sf.step(name="screen")
async def screen(ctx: sf.FlowContext, request: PaymentRequest) -> PaymentRequest:
    """Ask the fraud service; stop the payment if the score is too high."""
    fraud: FraudService = ctx.services["fraud"]
    score = await fraud.score(request)
    if score > FRAUD_LIMIT:
        msg = f"fraud score {score} is above {FRAUD_LIMIT} for {request.card}"
        raise SuspectedFraudError(msg)
    return request


def regular_fee(amount_cents: int) -> int:
    """1.5 % of the amount, at least 30 cents."""
    return max(30, round(amount_cents * 15 / 1000))


@sf.step(name="regular_terms", inline=True)
def regular_terms(request: PaymentRequest) -> Terms:
    return Terms(
        request, route=REGULAR, fee_cents=regular_fee(request.amount_cents), lane="standard"
    )


@sf.step(name="charge")
async def charge(ctx: sf.FlowContext, terms: Terms) -> Terms:
    """Charge the amount and the fee; the idempotency key makes a retry charge once."""
    gateway: Gateway = ctx.services["gateway"]
    payment = await gateway.charge(terms, idempotency_key=ctx.idempotency_key)
    return attrs.evolve(terms, payment=payment)


@sf.step(name="receipt", inline=True)
def receipt(terms: Terms) -> Receipt:
    if terms.payment is None:
        msg = "a receipt is made after the charge"
        raise RuntimeError(msg)
    return Receipt(
        payment_id=terms.payment.id,
        customer_id=terms.request.customer.id,
        route=terms.route,
        amount_cents=terms.request.amount_cents,
        fee_cents=terms.fee_cents,
        total_cents=terms.payment.total_cents,
        lane=terms.payment.lane,
    )


def build_premium() -> sf.Flow[PaymentRequest, Receipt]:
    return sf.Sequence(premium_terms, charge, receipt, name=PREMIUM)


def build_regular() -> sf.Flow[PaymentRequest, Receipt]:
    return sf.Sequence(screen, regular_terms, charge, receipt, name=REGULAR)


def build_flow(
    premium: sf.Flow[PaymentRequest, Receipt] | None = None,
    regular: sf.Flow[PaymentRequest, Receipt] | None = None,
) -> sf.Flow[PaymentRequest, Receipt]:
    """
    Return the payment flow: premium customers one way, everyone else the other.

    Like the Go ``NewPaymentFlow``, it takes the two branches; each one not
    given is the default built above.
    """
    return sf.Conditional(
        is_premium,
        build_premium() if premium is None else premium,
        otherwise=build_regular() if regular is None else regular,
        name="payment",
    )


# --- The script --------------------------------------------------------------------------


def path_text(path: sf.Path) -> str:
    return "/".join(map(str, path)) or "<root>"


def pay(flow: sf.Flow[PaymentRequest, Receipt], request: PaymentRequest, fakes: Fakes) -> None:
    """Route one payment, and print the branch it took and how it ended."""
    customer = request.customer
    kind = "a premium" if customer.is_premium else "a regular"
    amount = money(request.amount_cents, request.currency)
    print(f"{customer.name}, {kind} customer, pays {amount} with {request.card}")
    try:
        got = sf.run(flow, request, services=fakes.services)
    except sf.StepFailed as exc:
        print(f"=> REFUSED at {path_text(exc.path)}: {exc.__cause__}")
    else:
        fee = money(got.fee_cents, request.currency)
        total = money(got.total_cents, request.currency)
        print(f"=> PAID {got.payment_id} by the {got.route} branch: fee {fee}, total {total}")
    print(f"   fraud checks: {len(fakes.fraud.screened)}, charges: {len(fakes.gateway.charged)}")


def main() -> None:
    flow = build_flow()
    print("The payment flow is a Conditional with a branch per kind of customer:")
    for path, node in sf.walk(flow):
        name = getattr(node, "name", None)
        kind = type(node).__name__ if name is None else f"{type(node).__name__} {name!r}"
        print(f"    {path_text(path):<24} {kind}")

    ada = Customer("C-1", "Ada", is_premium=True)
    bob = Customer("C-2", "Bob")
    eve = Customer("C-3", "Eve")

    print("\n1. A premium customer: no screening, no fee, the priority lane")
    pay(flow, PaymentRequest(ada, 12_000, "EUR", "card-4242"), make_services())

    print("\n2. A regular customer: screened, then charged with the fee")
    pay(flow, PaymentRequest(bob, 12_000, "EUR", "card-1881"), make_services())

    print("\n3. A regular customer with a card the fraud service distrusts: nothing charged")
    pay(flow, PaymentRequest(eve, 12_000, "EUR", "card-6666"), make_services())


if __name__ == "__main__":
    main()
