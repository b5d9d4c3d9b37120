"""
The user registration example: a Sequence of validation, account creation and notification.
"""

from __future__ import annotations

import pytest
from example_runner import load_example, run_example

import systemflow as sf
from systemflow.testing import CallLog, FlowCase, FlowTestCase, MockService

example = load_example("user_registration")

ADA = example.SignupForm(" Ada@Example.org", "Ada", "correct horse battery")
USER = example.User("U-1", "ada@example.org", "Ada")
MAILER_DOWN = example.MailerUnavailableError("mail relay refused the connection")


@pytest.fixture(name="script", scope="module")
def _script():
    return run_example("user_registration")


def mocks(*, email_free=True, mail=("M-1",)):
    """The registration's services as mocks checked against the example's protocols."""
    log = CallLog()
    users = MockService("users", spec=example.UserService, log=log)
    users.on("is_email_free").returns(email_free)
    users.on("create").returns(USER)
    mailer = MockService("mailer", spec=example.Mailer, log=log)
    mailer.on("send_welcome").then(*mail)
    return {"users": users, "mailer": mailer}


class TestScript:
    def test_exits_zero(self, script):
        """The script runs to the end without error."""
        assert (0, "") == (script.returncode, script.stderr)

    def test_prints_the_registration(self, script):
        """Ada is registered and welcomed."""
        expected = "=> REGISTERED U-1 ada@example.org; welcome mail: M-1"

        assert expected in script.stdout.splitlines()

    def test_prints_where_validation_refused(self, script):
        """The refusals name the validation step that refused."""
        refusals = [line for line in script.stdout.splitlines() if line.startswith("=> REFUSED")]

        assert [
            "=> REFUSED at validation/check_form",
            "=> REFUSED at validation/email_available",
        ] == [line.partition(":")[0] for line in refusals]

    def test_prints_the_ignored_mail_failure(self, script):
        """The mail failure is retried, logged as ignored, and the account stands."""
        out = script.stdout

        assert "systemflow.retry_scheduled" in out
        assert "systemflow.step_failed_ignored" in out
        assert "=> REGISTERED U-1 grace@example.org; welcome mail: not sent" in out


class TestRegistration(FlowTestCase):
    """The registration flow on mocked services."""

    flow = example.build_flow()

    async def test_cases(self):
        """Each kind of form ends as it should."""
        await self.run_cases(
            self.flow,
            [
                FlowCase(
                    "happy", ADA, expected_output=example.Registration(USER, "M-1"), mocks=mocks()
                ),
                FlowCase(
                    "invalid form",
                    example.SignupForm("nobody", " ", "short"),
                    expected_error=example.InvalidFormError,
                    mocks=mocks(),
                ),
                FlowCase(
                    "taken address",
                    ADA,
                    expected_error="ada@example.org is already registered",
                    mocks=mocks(email_free=False),
                ),
                FlowCase(
                    "mailer down",
                    ADA,
                    expected_output=example.Registration(USER, None),
                    mocks=mocks(mail=(MAILER_DOWN,)),
                ),
            ],
        )

    async def test_happy_path_calls_in_order(self):
        """The address is checked, then the user created, then welcomed."""
        result = await self.run_flow(self.flow, ADA, services=mocks())

        self.assert_call_order(result, "users.is_email_free", "users.create", "mailer.send_welcome")
        assert ["users.is_email_free", "users.create", "mailer.send_welcome"] == [
            c.target for c in result.calls
        ]

    async def test_address_is_normalised(self):
        """The users service is asked about the address trimmed and lower-cased."""
        services = mocks()
        await self.run_flow(self.flow, ADA, services=services)

        self.assert_called(services["users"], "is_email_free", args=["ada@example.org"])

    async def test_happy_path_stores_only_a_hash(self):
        """The users service gets the password's hash, never the password, and the node's key."""
        services = mocks()
        await self.harness.run(self.flow, ADA, services=services, run_id="run-1")
        (create,) = services["users"].calls_to("create")
        (user,) = create.args

        assert user.password_hash.startswith("sha256:")
        assert "correct horse battery" not in repr(user)
        assert {"idempotency_key": "run-1:account/create_user"} == create.kwargs

    async def test_happy_path_sends_one_welcome(self):
        """The welcome mail goes to the new user once."""
        services = mocks()
        await self.run_flow(self.flow, ADA, services=services)

        welcome = example.Welcome("U-1", "ada@example.org", "Ada")
        self.assert_called(services["mailer"], "send_welcome", times=1, args=[welcome])

    async def test_invalid_form_fails_at_check_form(self):
        """A malformed form fails at validation/check_form, with every problem named."""
        services = mocks()
        result = await self.run_flow(
            self.flow, example.SignupForm("nobody", " ", "short"), services=services
        )

        self.assert_failed_at(result, "validation/check_form")
        assert example.InvalidFormError is type(result.error.__cause__)
        assert 3 == str(result.error.__cause__).count(";") + 1
        assert () == result.calls

    async def test_taken_email_creates_nothing(self):
        """A taken address fails at validation/email_available; no user is created, no mail."""
        services = mocks(email_free=False)
        result = await self.run_flow(self.flow, ADA, services=services)

        self.assert_failed_at(result, "validation/email_available")
        self.assert_not_called(services["users"], "create")
        self.assert_not_called(services["mailer"])

    async def test_mailer_down_keeps_the_account(self):
        """A mailer that fails twice leaves the mail unsent and the user registered."""
        services = mocks(mail=(MAILER_DOWN,))
        result = await self.run_flow(self.flow, ADA, services=services)

        self.assert_called(services["mailer"], "send_welcome", times=2)
        assert (None, "U-1") == (result.output.welcome_message_id, result.output.user.id)
        self.assert_compensated(result)

    async def test_mailer_down_is_retried_on_the_fake_clock_and_logged(self):
        """The retry's backoff runs on the fake clock; the give-up is logged as ignored."""
        result = await self.run_flow(self.flow, ADA, services=mocks(mail=(MAILER_DOWN,)))
        events = [log["event"] for log in result.logs]

        assert 1 == len(self.clock.sleeps)
        assert "systemflow.retry_scheduled" in events
        assert "systemflow.step_failed_ignored" in events

    async def test_mailer_recovers_on_the_retry(self):
        """A mailer that fails once sends on the second attempt."""
        services = mocks(mail=(MAILER_DOWN, "M-2"))
        result = await self.run_flow(self.flow, ADA, services=services)

        assert "M-2" == result.output.welcome_message_id
        self.assert_called(services["mailer"], "send_welcome", times=2)

    async def test_sub_flows_can_be_swapped(self):
        """build_flow takes its sub-flows, like the Go constructor: a quiet notification."""
        quiet = sf.Sequence(example.registered, name="notification")
        services = mocks()
        result = await self.run_flow(example.build_flow(notification=quiet), ADA, services=services)

        self.assert_not_called(services["mailer"])
        assert None is result.output.welcome_message_id


class TestTree:
    def test_the_tree_is_three_sub_flows(self):
        """The root is a Sequence of validation, account and notification."""
        flow = example.build_flow()

        assert ["validation", "account", "notification"] == [seg for seg, _ in flow.children]
