"""
User registration: a Sequence of three sub-flows, as in the System Flow design.

The design's seed 000 builds ``NewUserRegistrationFlow(validationFlow,
accountCreationFlow, notificationFlow)``: a composite flow that runs three
sub-flows one after the other, each on the previous one's output. Here each
sub-flow is a small tree of its own, built by its own function, and the
registration flow is a ``Sequence`` of the three::

    validation (Sequence)
        check_form              the form itself: e-mail, name, password
        email_available         the users service: is the address free?
    account (Sequence)
        new_account             hash the password (never stored in the clear)
        create_user             the users service (idempotency key)
    notification (Sequence)
        welcome_email           the mailer: retried, and critical=False: a
                                failure is logged, the user stays registered
        registered              the flow's output

``build_flow`` takes the three sub-flows as arguments, like the Go
constructor, so a caller (or a test) can swap one for another; the defaults
are the ones above.

The services are in-process fakes that print what they do and keep what they
did, so the script and its test can show it.

Run it from the repository root::

    .venv/bin/python examples/user_registration.py
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import sys
from typing import TYPE_CHECKING, Protocol

import attrs
import structlog

import systemflow as sf

if TYPE_CHECKING:
    from collections.abc import Iterator

    from structlog.typing import EventDict, WrappedLogger


# --- What comes in, and what the flow makes of it -------------------------------


@attrs.frozen
class SignupForm:
    """What the person typed in: the flow's input."""

    email: str
    display_name: str
    password: str = attrs.field(repr=False)


@attrs.frozen
class NewUser:
    """What the users service is asked to create: no password, only its hash."""

    email: str
    display_name: str
    password_hash: str = attrs.field(repr=False)


@attrs.frozen
class User:
    id: str
    email: str
    display_name: str


@attrs.frozen
class Welcome:
    """What the mailer is asked to send."""

    user_id: str
    email: str
    display_name: str


@attrs.frozen
class Registration:
    """What the flow returns."""

    user: User
    welcome_message_id: str | None = None


class InvalidFormError(ValueError):
    """The form itself is wrong; nothing was created."""


class EmailTakenError(Exception):
    """Somebody already registered with this address."""


class MailerUnavailableError(ConnectionError):
    """The mail relay did not take the message."""


# --- The services the flow needs --------------------------------------------------


class UserService(Protocol):
    async def is_email_free(self, email: str) -> bool: ...
    async def create(self, user: NewUser, *, idempotency_key: str) -> User: ...


class Mailer(Protocol):
    async def send_welcome(self, welcome: Welcome) -> str: ...


# --- In-process fakes of those services ---------------------------------------------


def _say(service: str, text: str) -> None:
    print(f"    [{service}] {text}")


def _counter() -> Iterator[int]:
    return itertools.count(1)


@attrs.define
class FakeUsers:
    users: dict[str, User] = attrs.field(factory=dict)  # by e-mail
    requests: list[tuple[NewUser, str]] = attrs.field(factory=list)  # with their keys
    _by_key: dict[str, User] = attrs.field(factory=dict, repr=False)
    _ids: Iterator[int] = attrs.field(factory=_counter, repr=False)

    async def is_email_free(self, email: str) -> bool:
        free = email not in self.users
        _say("users", f"{email} is {'free' if free else 'taken'}")
        return free

    async def create(self, user: NewUser, *, idempotency_key: str) -> User:
        self.requests.append((user, idempotency_key))
        if idempotency_key in self._by_key:  # a repeated request: the same user
            return self._by_key[idempotency_key]
        created = User(f"U-{next(self._ids)}", user.email, user.display_name)
        self.users[user.email] = created
        self._by_key[idempotency_key] = created
        _say("users", f"created {created.id} for {user.email}")
        return created


@attrs.define
class FakeMailer:
    down: bool = False
    attempts: int = 0
    sent: list[Welcome] = attrs.field(factory=list)

    async def send_welcome(self, welcome: Welcome) -> str:
        self.attempts += 1
        if self.down:
            _say("mailer", f"the relay refused the message (attempt {self.attempts})")
            raise MailerUnavailableError("mail relay refused the connection")
        self.sent.append(welcome)
        _say("mailer", f"welcome mail to {welcome.email}")
        return f"M-{len(self.sent)}"


@attrs.frozen
class Fakes:
    """The fake services of one scenario."""

    users: FakeUsers = attrs.field(factory=FakeUsers)
    mailer: FakeMailer = attrs.field(factory=FakeMailer)

    @property
    def services(self) -> dict[str, object]:
        """What the steps find in ``ctx.services``: each fake, under its field's name."""
        return attrs.asdict(self, recurse=False)


def make_services(*, mailer_down: bool = False, taken: tuple[str, ...] = ()) -> Fakes:
    """Return fresh fakes; ``taken`` are e-mail addresses already registered."""
    users = FakeUsers()
    for number, email in enumerate(taken, start=1):
        users.users[email] = User(f"U-OLD-{number}", email, email.partition("@")[0])
    return Fakes(users=users, mailer=FakeMailer(down=mailer_down))


# --- Validation -------------------------------------------------------------------------


@sf.step(name="check_form", inline=True)
def check_form(form: SignupForm) -> SignupForm:
    """Refuse a malformed form; return it with the e-mail address normalised."""
    email = form.email.strip().lower()
    problems = []
    local, _, domain = email.partition("@")
    if not local or "." not in domain:
        problems.append(f"{form.email!r} is not an e-mail address")
    if not form.display_name.strip():
        problems.append("a display name is required")
    if len(form.password) < 12:  # noqa: PLR2004 -- the house rule, stated once
        problems.append("the password needs at least 12 characters")
    if problems:
        raise InvalidFormError("; ".join(problems))
    return attrs.evolve(form, email=email, display_name=form.display_name.strip())


@sf.step(name="email_available")
async def email_available(ctx: sf.FlowContext, form: SignupForm) -> SignupForm:
    users: UserService = ctx.services["users"]
    if not await users.is_email_free(form.email):
        raise EmailTakenError(f"{form.email} is already registered")
    return form


def build_validation() -> sf.Flow[SignupForm, SignupForm]:
    """The validation sub-flow: the form, then the address with the users service."""
    return sf.Sequence(check_form, email_available, name="validation")


# --- Account creation -----------------------------------------------------------------


@sf.step(name="new_account", inline=True)
def new_account(form: SignupForm) -> NewUser:
    # A demo hash: a real service would use a password hashing function (argon2, scrypt).
    digest = hashlib.sha256(form.password.encode()).hexdigest()
    return NewUser(form.email, form.display_name, f"sha256:{digest}")


@sf.step(name="create_user")
async def create_user(ctx: sf.FlowContext, user: NewUser) -> User:
    """Create the user; the idempotency key makes a repeated request create one user."""
    users: UserService = ctx.services["users"]
    return await users.create(user, idempotency_key=ctx.idempotency_key)


def build_account_creation() -> sf.Flow[SignupForm, User]:
    """The account creation sub-flow: hash the password, create the user."""
    return sf.Sequence(new_account, create_user, name="account")


# --- Notification -------------------------------------------------------------------------


@sf.step(name="registered", inline=True)
def registered(user: User) -> Registration:
    """Open the output record; no welcome mail has gone out yet."""
    return Registration(user)


# The mail relay drops a connection now and then: one more try, then give up.
MAIL_RETRY = sf.RetryPolicy(max_attempts=2, initial_delay=0.01, retry_on=MailerUnavailableError)


@sf.step(name="send", retry=MAIL_RETRY, critical=False)
async def send_welcome(ctx: sf.FlowContext, registration: Registration) -> str:
    """Send the welcome mail; return the mailer's message id."""
    mailer: Mailer = ctx.services["mailer"]
    user = registration.user
    return await mailer.send_welcome(Welcome(user.id, user.email, user.display_name))


def build_notification() -> sf.Flow[User, Registration]:
    """
    The notification sub-flow: open the output, send the welcome mail.

    The mail step is ``critical=False``: when it fails (after its retry) the
    failure is logged and the ``Assign`` leaves ``welcome_message_id`` empty,
    because a lost welcome mail must not fail a registration.
    """
    return sf.Sequence(
        registered,
        sf.Assign(welcome_message_id=send_welcome, name="welcome"),
        name="notification",
    )


def build_flow(
    validation: sf.Flow[SignupForm, SignupForm] | None = None,
    account_creation: sf.Flow[SignupForm, User] | None = None,
    notification: sf.Flow[User, Registration] | None = None,
) -> sf.Flow[SignupForm, Registration]:
    """
    Return the registration flow: the three sub-flows, one after the other.

    Like the Go ``NewUserRegistrationFlow``, it takes the sub-flows; each one
    not given is the default built above.
    """
    return sf.Sequence(
        build_validation() if validation is None else validation,
        build_account_creation() if account_creation is None else account_creation,
        build_notification() if notification is None else notification,
        name="user_registration",
    )


# --- The script ---------------------------------------------------------------------


def _render(_logger: WrappedLogger, _method: str, event: EventDict) -> str:
    # One short line per systemflow event: its name, the node, and what it says.
    name = event.pop("event")
    path = event.pop("path", "")
    # An ignored failure's message repeats the path and run id: its cause's type says enough.
    keys = ("attempt", "cause_type") if "cause_type" in event else ("attempt", "error")
    details = ", ".join(f"{key}={event[key]}" for key in keys if key in event)
    return f"    ({name} at {path}: {details})" if details else f"    ({name} at {path})"


def configure_logging() -> None:
    """systemflow's warnings (retries, ignored failures) on standard output, in short."""
    structlog.configure(
        processors=[_render],
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )


def path_text(path: sf.Path) -> str:
    return "/".join(map(str, path)) or "<root>"


def register(flow: sf.Flow[SignupForm, Registration], form: SignupForm, fakes: Fakes) -> None:
    """Register one person, and print how it ended."""
    print(f"Registering {form.display_name!r}, e-mail {form.email!r}")
    try:
        registration = sf.run(flow, form, services=fakes.services)
    except sf.StepFailed as exc:
        print(f"=> REFUSED at {path_text(exc.path)}: {exc.__cause__}")
    else:
        user = registration.user
        mail = registration.welcome_message_id or "not sent (logged; the account stands)"
        print(f"=> REGISTERED {user.id} {user.email}; welcome mail: {mail}")
    print(f"   users now: {', '.join(sorted(fakes.users.users)) or 'none'}")


def main() -> None:
    configure_logging()
    flow = build_flow()
    print("The registration flow is three sub-flows in a Sequence:")
    for path, node in sf.walk(flow):
        name = getattr(node, "name", None)
        kind = type(node).__name__ if name is None else f"{type(node).__name__} {name!r}"
        print(f"    {path_text(path):<40} {kind}")

    print("\n1. Ada registers: validated, created, welcomed")
    register(flow, SignupForm(" Ada@Example.org", "Ada", "correct horse battery"), make_services())

    print("\n2. A form with a bad address and a short password: refused by validation")
    register(flow, SignupForm("ada.example.org", "Ada", "hunter2"), make_services())

    print("\n3. The address is taken: refused before anything is created")
    taken = make_services(taken=("ada@example.org",))
    register(flow, SignupForm("ada@example.org", "Ada", "correct horse battery"), taken)

    print("\n4. The mail relay is down: retried, then logged; the account stands")
    register(
        flow,
        SignupForm("grace@example.org", "Grace", "correct horse battery"),
        make_services(mailer_down=True),
    )


if __name__ == "__main__":
    main()
