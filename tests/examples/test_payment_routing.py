"""
The payment routing example: a Conditional sends premium and regular customers different ways.
"""

from __future__ import annotations

import pytest
from example_runner import load_example, run_example

import systemflow as sf

example = load_example("payment_routing")

ADA = example.Customer("C-1", "Ada", is_premium=True)
BOB = example.Customer("C-2", "Bob")


@pytest.fixture(name="script", scope="module")
def _script():
    return run_example("payment_routing")


async def pay(customer, card="card-4242", amount=12_000, flow=None):
    """Route one payment on fresh fakes; return (fakes, receipt or error)."""
    fakes = example.make_services()
    request = example.PaymentRequest(customer, amount, "EUR", card)
    try:
        output = await sf.execute(flow or example.build_flow(), request, services=fakes.services)
    except sf.FlowError as exc:
        return fakes, exc
    return fakes, output


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


class TestPaymentRouting:
    async def test_premium_takes_the_premium_branch(self):
        """A premium customer pays no fee, in the priority lane."""
        _, receipt = await pay(ADA)

        expected = example.Receipt("P-1", "C-1", "premium", 12_000, 0, 12_000, "priority")
        assert expected == receipt

    async def test_premium_is_not_screened(self):
        """Only the chosen branch runs: the fraud service never hears of a premium payment."""
        fakes, _ = await pay(ADA)

        assert [] == fakes.fraud.screened

    async def test_regular_takes_the_regular_branch(self):
        """A regular customer is screened and pays the fee, in the standard lane."""
        fakes, receipt = await pay(BOB)

        expected = example.Receipt("P-1", "C-2", "regular", 12_000, 180, 12_180, "standard")
        assert expected == receipt
        assert 1 == len(fakes.fraud.screened)

    async def test_each_branch_charges_at_its_own_path(self):
        """The shared charge node gets each branch's path in its idempotency key."""
        fakes_premium, _ = await pay(ADA)
        fakes_regular, _ = await pay(BOB)

        keys = [
            next(iter(fakes.gateway._by_key)).partition(":")[2]
            for fakes in (fakes_premium, fakes_regular)
        ]
        assert ["premium/charge", "regular/charge"] == keys

    async def test_suspected_fraud_charges_nothing(self):
        """A high fraud score fails the regular branch at its screen; nothing is charged."""
        fakes, error = await pay(BOB, card="card-6666")

        assert ("regular", "screen") == error.path
        assert example.SuspectedFraudError is type(error.__cause__)
        assert [] == fakes.gateway.charged

    async def test_premium_card_is_trusted(self):
        """A premium customer's distrusted card is charged: premium payments are not screened."""
        fakes, receipt = await pay(ADA, card="card-6666")

        assert ("premium", 1) == (receipt.route, len(fakes.gateway.charged))

    @pytest.mark.parametrize(("amount", "fee"), [(100, 30), (2_000, 30), (12_000, 180)])
    def test_regular_fee(self, amount, fee):
        """The regular fee is 1.5 % of the amount, at least 30 cents."""
        assert fee == example.regular_fee(amount)

    async def test_branches_can_be_swapped(self):
        """build_flow takes its branches, like the Go constructor."""
        free = sf.Sequence(example.premium_terms, example.charge, example.receipt, name="free")
        _, receipt = await pay(BOB, flow=example.build_flow(regular=free))

        assert (0, "premium") == (receipt.fee_cents, receipt.route)
