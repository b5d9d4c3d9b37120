"""
The payment routing example: a Conditional sends premium and regular customers different ways.
"""

from __future__ import annotations

import pytest
from example_runner import load_example, run_example

import systemflow as sf
from systemflow.testing import FlowCase, FlowTestCase, MockService

example = load_example("payment_routing")

ADA = example.Customer("C-1", "Ada", is_premium=True)
BOB = example.Customer("C-2", "Bob")


@pytest.fixture(name="script", scope="module")
def _script():
    return run_example("payment_routing")


def mocks():
    """The fraud service (distrusting card-6666) and the gateway, as checked mocks."""
    fraud = MockService("fraud", spec=example.FraudService)
    fraud.on("score").calls(lambda request: 95 if request.card == "card-6666" else 12)
    gateway = MockService("gateway", spec=example.Gateway)
    gateway.on("charge").calls(
        lambda terms, *, idempotency_key: example.Payment(
            "P-1", terms.request.amount_cents + terms.fee_cents, terms.lane
        )
    )
    return {"fraud": fraud, "gateway": gateway}


def request(customer, card="card-4242", amount=12_000):
    return example.PaymentRequest(customer, amount, "EUR", card)


PREMIUM_RECEIPT = example.Receipt("P-1", "C-1", "premium", 12_000, 0, 12_000, "priority")
REGULAR_RECEIPT = example.Receipt("P-1", "C-2", "regular", 12_000, 180, 12_180, "standard")


class TestScript:
    def test_exits_zero(self, script):
        """The script runs to the end without error."""
        assert (0, "") == (script.returncode, script.stderr)

    def test_prints_both_branches(self, script):
        """The premium and the regular payment each name the branch they took."""
        lines = script.stdout.splitlines()

        assert "=> PAID P-1 by the premium branch: fee 0.00 EUR, total 120.00 EUR" in lines
        assert "=> PAID P-1 by the regular branch: fee 1.80 EUR, total 121.80 EUR" in lines

    def test_prints_the_refusal(self, script):
        """The distrusted card is refused at the regular branch's screen."""
        expected = "=> REFUSED at regular/screen: fraud score 95 is above 80 for card-6666"

        assert expected in script.stdout.splitlines()


class TestPaymentRouting(FlowTestCase):
    """The payment flow on mocked services."""

    flow = example.build_flow()

    async def test_cases(self):
        """Each kind of payment ends as it should."""
        await self.run_cases(
            self.flow,
            [
                FlowCase("premium", request(ADA), expected_output=PREMIUM_RECEIPT, mocks=mocks()),
                FlowCase("regular", request(BOB), expected_output=REGULAR_RECEIPT, mocks=mocks()),
                FlowCase(
                    "regular, distrusted card",
                    request(BOB, card="card-6666"),
                    expected_error=example.SuspectedFraudError,
                    mocks=mocks(),
                ),
                FlowCase(
                    "premium, distrusted card",
                    request(ADA, card="card-6666"),
                    expected_output=PREMIUM_RECEIPT,
                    mocks=mocks(),
                ),
            ],
        )

    async def test_premium_is_not_screened(self):
        """Only the chosen branch runs: the fraud service never hears of a premium payment."""
        services = mocks()
        result = await self.run_flow(self.flow, request(ADA), services=services)

        self.assert_not_called(services["fraud"])
        assert ["gateway.charge"] == [c.target for c in result.calls]

    async def test_regular_is_screened_then_charged(self):
        """A regular customer is screened once, then charged with the fee."""
        services = mocks()
        result = await self.run_flow(self.flow, request(BOB), services=services)

        self.assert_called(services["fraud"], "score", times=1, args=[request(BOB)])
        self.assert_call_order(result, "fraud.score", "gateway.charge")
        assert REGULAR_RECEIPT == result.output

    async def test_each_branch_charges_at_its_own_path(self):
        """The shared charge node gets each branch's path in its idempotency key."""
        keys = []
        for customer in (ADA, BOB):
            services = mocks()
            await self.harness.run(self.flow, request(customer), services=services, run_id="r")
            (charge,) = services["gateway"].calls_to("charge")
            keys.append(charge.kwargs["idempotency_key"])

        assert ["r:premium/charge", "r:regular/charge"] == keys

    async def test_suspected_fraud_charges_nothing(self):
        """A high fraud score fails the regular branch at its screen; nothing is charged."""
        services = mocks()
        result = await self.run_flow(self.flow, request(BOB, card="card-6666"), services=services)

        self.assert_failed_at(result, "regular/screen")
        assert example.SuspectedFraudError is type(result.error.__cause__)
        self.assert_not_called(services["gateway"])

    async def test_premium_card_is_trusted(self):
        """A premium customer's distrusted card is charged: premium payments are not screened."""
        services = mocks()
        result = await self.run_flow(self.flow, request(ADA, card="card-6666"), services=services)

        assert "premium" == result.output.route
        self.assert_called(services["gateway"], "charge", times=1)

    async def test_a_failed_charge_fails_at_the_branch_charge(self):
        """A gateway failure fails the payment at the charge of the branch taken."""
        result = await self.run_flow(
            self.flow, request(BOB), services=mocks(), faults={"regular/charge": OSError}
        )

        self.assert_failed_at(result, "regular/charge")

    async def test_branches_can_be_swapped(self):
        """build_flow takes its branches, like the Go constructor."""
        free = sf.Sequence(example.premium_terms, example.charge, example.receipt, name="free")
        services = mocks()
        result = await self.run_flow(
            example.build_flow(regular=free), request(BOB), services=services
        )

        assert (0, "premium") == (result.output.fee_cents, result.output.route)
        self.assert_not_called(services["fraud"])


class TestFee:
    @pytest.mark.parametrize(("amount", "fee"), [(100, 30), (2_000, 30), (12_000, 180)])
    def test_regular_fee(self, amount, fee):
        """The regular fee is 1.5 % of the amount, at least 30 cents."""
        assert fee == example.regular_fee(amount)
