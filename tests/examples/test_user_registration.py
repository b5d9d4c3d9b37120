"""
The user registration example: a Sequence of validation, account creation and notification.
"""

from __future__ import annotations

import pytest
from example_runner import load_example, run_example

import systemflow as sf

example = load_example("user_registration")

ADA = example.SignupForm(" Ada@Example.org", "Ada", "correct horse battery")


@pytest.fixture(name="script", scope="module")
def _script():
    return run_example("user_registration")


async def register(form=ADA, fakes=None, flow=None):
    """Register ``form`` on fresh fakes; return (fakes, registration or error)."""
    fakes = example.make_services() if fakes is None else fakes
    try:
        output = await sf.execute(flow or example.build_flow(), form, services=fakes.services)
    except sf.FlowError as exc:
        return fakes, exc
    return fakes, output


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


class TestRegistration:
    async def test_happy_path_returns_the_user(self):
        """A valid form yields the created user, its address normalised, and the mail's id."""
        _, registration = await register()

        expected = example.Registration(example.User("U-1", "ada@example.org", "Ada"), "M-1")
        assert expected == registration

    async def test_happy_path_stores_only_a_hash(self):
        """The users service gets the password's hash, never the password."""
        fakes, _ = await register()

        ((user, key),) = fakes.users.requests
        assert user.password_hash.startswith("sha256:")
        assert "correct horse battery" not in repr(user)
        assert key.endswith(":account/create_user")

    async def test_happy_path_sends_one_welcome(self):
        """The welcome mail goes to the new user once."""
        fakes, _ = await register()

        assert [example.Welcome("U-1", "ada@example.org", "Ada")] == fakes.mailer.sent

    async def test_invalid_form_fails_at_check_form(self):
        """A malformed form fails at validation/check_form, with every problem named."""
        bad = example.SignupForm("nobody", " ", "short")
        fakes, error = await register(bad)

        assert ("validation", "check_form") == error.path
        assert example.InvalidFormError is type(error.__cause__)
        assert 3 == str(error.__cause__).count(";") + 1
        assert {} == fakes.users.users

    async def test_taken_email_creates_nothing(self):
        """A taken address fails at validation/email_available; no user is created."""
        fakes = example.make_services(taken=("ada@example.org",))
        _, error = await register(fakes=fakes)

        assert ("validation", "email_available") == error.path
        assert ["ada@example.org"] == list(fakes.users.users)
        assert [] == fakes.mailer.sent

    async def test_mailer_down_keeps_the_account(self):
        """A mailer that fails twice leaves the mail unsent and the user registered."""
        fakes, registration = await register(fakes=example.make_services(mailer_down=True))

        assert (2, None) == (fakes.mailer.attempts, registration.welcome_message_id)
        assert "U-1" == registration.user.id

    async def test_sub_flows_can_be_swapped(self):
        """build_flow takes its sub-flows, like the Go constructor: a quiet notification."""
        quiet = sf.Sequence(example.registered, name="notification")
        flow = example.build_flow(notification=quiet)
        fakes, registration = await register(flow=flow)

        assert ([], None) == (fakes.mailer.sent, registration.welcome_message_id)

    def test_the_tree_is_three_sub_flows(self):
        """The root is a Sequence of validation, account and notification."""
        flow = example.build_flow()

        assert ["validation", "account", "notification"] == [seg for seg, _ in flow.children]
