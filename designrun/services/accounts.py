"""Users and their sessions: sign-up, sign-in (rate limited), sign-out, session lookup."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from designrun.auth.passwords import hash_password, verify_password
from designrun.auth.sessions import hash_token, new_token
from designrun.database import write_transaction
from designrun.errors import (
    ApiError,
    ForbiddenError,
    InvalidRequestError,
    RateLimitedError,
    UnauthorizedError,
)
from designrun.extensions import db
from designrun.models import Account, SignInFailure, User, UserSession
from designrun.models.types import utcnow, uuid7

log = logging.getLogger(__name__)

MIN_PASSWORD_LENGTH = 8
MAX_EMAIL_LENGTH = 254
MAX_NAME_LENGTH = 200  # users.name and accounts.name
FAILURE_WINDOW = timedelta(minutes=15)
MAX_FAILURES = 10


@dataclass(frozen=True)
class SignedIn:
    token: str
    user: User
    session: UserSession


def normalise_email(raw: str) -> str:
    """Trim and lower-case; raise InvalidRequestError unless it has one '@' with text around."""
    email = raw.strip().lower()
    local, at, domain = email.partition("@")
    if not at or not local or not domain or "@" in domain or len(email) > MAX_EMAIL_LENGTH:
        raise InvalidRequestError("email: must be an e-mail address (one '@', at most 254 chars)")
    return email


def create_user(email: str, password: str, name: str | None) -> User:
    """Create a user with a personal account.

    Raises InvalidRequestError (bad e-mail, short password) or a 422 ``user_already_exists``.
    """
    email = normalise_email(email)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidRequestError(
            f"password: must be at least {MIN_PASSWORD_LENGTH} characters",
            code="password_too_short",
        )
    # A derived name is cut to the column's size (an e-mail's local part may be longer).
    display = (name or "").strip() or email.split("@", 1)[0][:MAX_NAME_LENGTH]
    if len(display) > MAX_NAME_LENGTH:  # the CLI's --name (the API's schema checks it too)
        raise InvalidRequestError(f"name: must be at most {MAX_NAME_LENGTH} characters")
    password_hash = hash_password(password)  # slow on purpose: outside the write lock
    try:
        with write_transaction() as session:
            if session.scalar(select(User.id).where(User.email == email)) is not None:
                raise _user_exists()
            account = Account(id=uuid7(), name=display)
            user = User(
                id=uuid7(),
                account=account,
                email=email,
                name=display,
                password_hash=password_hash,
            )
            session.add_all([account, user])
    except IntegrityError:
        # Two sign-ups for one e-mail at the same moment: the unique index decides.
        raise _user_exists() from None
    return user


def _user_exists() -> ApiError:
    return ApiError(
        "a user with this e-mail already exists", status=422, code="user_already_exists"
    )


def _start_session(user: User, ip: str | None, user_agent: str | None) -> SignedIn:
    token = new_token()
    now = utcnow()
    with write_transaction() as session:
        record = UserSession(
            id=uuid7(),
            user_id=user.id,
            token_hash=hash_token(token),
            expires_at=now + timedelta(seconds=current_app.config["SESSION_TTL"]),
            created_at=now,
            updated_at=now,
            ip_address=(ip or "")[:64] or None,
            user_agent=(user_agent or "")[:512] or None,
        )
        session.add(record)
    record.user = user
    return SignedIn(token=token, user=user, session=record)


def sign_up(
    email: str, password: str, name: str | None, ip: str | None, user_agent: str | None
) -> SignedIn:
    """Create a user and sign them in. Raises 403 ``signup_disabled`` when ALLOW_SIGNUP=false."""
    if not current_app.config["ALLOW_SIGNUP"]:
        raise ForbiddenError("sign-up is disabled on this server", code="signup_disabled")
    user = create_user(email, password, name)
    return _start_session(user, ip, user_agent)


def sign_in(email: str, password: str, ip: str, user_agent: str | None) -> SignedIn:
    """Check the credentials and open a session.

    An unknown e-mail and a wrong password get the same answer and cost the same time.
    More than MAX_FAILURES failures for one (e-mail, client address) within FAILURE_WINDOW raise
    RateLimitedError (429 with Retry-After) until the oldest of them leaves the window.

    The check is atomic without locks: each attempt first records itself as a failure (committed),
    then counts the pair's failures. Every recorded attempt is in the count of any attempt that
    counts after it, so of attempts arriving at the same moment at most MAX_FAILURES see a count
    within the limit. A refused attempt withdraws its row; a successful one clears the pair.
    """
    email = normalise_email(email)
    now = utcnow()
    window_start = now - FAILURE_WINDOW
    pair = (SignInFailure.email == email, SignInFailure.client_ip == ip)
    attempt = SignInFailure(id=uuid7(), email=email, client_ip=ip, created_at=now)
    with write_transaction() as session:
        session.add(attempt)
        # Old failures are no longer counted: prune them for this key as we go.
        session.execute(
            delete(SignInFailure).where(*pair, SignInFailure.created_at <= window_start)
        )
    attempt_id = attempt.id
    count, oldest = db.session.execute(
        select(func.count(), func.min(SignInFailure.created_at)).where(
            *pair, SignInFailure.created_at > window_start
        )
    ).one()
    if count > MAX_FAILURES:
        with write_transaction() as session:
            session.execute(delete(SignInFailure).where(SignInFailure.id == attempt_id))
        retry_after = int(((oldest or now) + FAILURE_WINDOW - now).total_seconds()) + 1
        raise RateLimitedError("too many failed sign-ins; try again later", retry_after)
    user = db.session.scalar(select(User).where(User.email == email))
    password_ok = verify_password(user.password_hash if user else None, password)
    if user is None or not password_ok:
        raise UnauthorizedError("invalid email or password", code="invalid_credentials")
    with write_transaction() as session:
        session.execute(delete(SignInFailure).where(*pair))
    return _start_session(user, ip, user_agent)


def sign_out(token: str | None) -> None:
    """Revoke the session of ``token`` (no error when there is none)."""
    if not token:
        return
    with write_transaction() as session:
        session.execute(delete(UserSession).where(UserSession.token_hash == hash_token(token)))


def resolve_session(token: str) -> UserSession | None:
    """The live session for ``token`` (with its user), or None; renews it when used."""
    return resolve_and_renew_session(token)[0]


def resolve_and_renew_session(token: str) -> tuple[UserSession | None, bool]:
    """(the live session for ``token`` or None, whether this call renewed it).

    The expiry slides by SESSION_TTL on use, at most once per tenth of the TTL, so a busy client
    does not turn every read into a write. The renewal is a conditional UPDATE: when a sign-out
    (or expiry) removed the session between the read and the write, the caller is anonymous.
    """
    now = utcnow()
    record = db.session.scalar(
        select(UserSession).where(UserSession.token_hash == hash_token(token))
    )
    if record is None or record.expires_at <= now:
        return None, False
    ttl = timedelta(seconds=current_app.config["SESSION_TTL"])
    if now - record.updated_at < ttl / 10:
        return record, False
    # Detached, the loaded record (and its user) survives the commit without a reload that
    # could find the row gone.
    db.session.expunge(record)
    expires = now + ttl
    with write_transaction() as session:
        result = session.execute(
            update(UserSession)
            .where(UserSession.id == record.id, UserSession.expires_at > now)
            .values(expires_at=expires, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None, False
    record.expires_at = expires
    record.updated_at = now
    return record, True


def user_by_id(user_id: uuid.UUID) -> User | None:
    return db.session.get(User, user_id)
