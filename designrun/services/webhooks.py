"""Webhooks: an account's endpoints, the queue of deliveries, and the address rule.

Standard Webhooks (https://www.standardwebhooks.com): each delivery carries ``webhook-id``
(the same on every retry of one event), ``webhook-timestamp`` (the attempt's time, seconds) and
``webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">``, keyed with the
base64-decoded part of the endpoint's ``whsec_`` secret.

Deliveries are queued by ``enqueue_for_run`` inside the transaction of the run's terminal
transition (api/webhooks.py registers it on services/hooks.py's ``on_transition`` with the
API's Run serializer, so no service calls it by name nor imports the API) and sent by
triggers/webhooks.py. The address rule (http(s) only; loopback,
link-local, private and other non-public addresses refused unless WEBHOOK_ALLOW_PRIVATE) is
checked when an endpoint is created and again, on the resolved addresses, before each delivery:
a name that resolved to a public address yesterday may resolve to 127.0.0.1 today.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from designrun.database import write_transaction
from designrun.errors import InvalidRequestError, NotFoundError
from designrun.extensions import db
from designrun.models import Run, WebhookDelivery, WebhookEndpoint
from designrun.models.types import utcnow, uuid7

EVENT_TYPES = ("run.completed", "run.failed", "run.cancelled")
MAX_ENDPOINTS_PER_ACCOUNT = 20
SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks prefix, not a secret


# --- the address rule ---------------------------------------------------------------------------


def address_allowed(address: str) -> bool:
    """True when ``address`` (an IP literal) is a public unicast address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (an IP literal resolves to itself)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def url_problem(url: str, allow_private: bool) -> str | None:
    """Why ``url`` may not receive webhooks (None when it may). Resolves its host name."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return "not a valid URL"
    if parts.scheme not in {"http", "https"}:
        return "must be an http or https URL"
    if not parts.hostname:
        return "must name a host"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials (sign the deliveries instead)"
    if allow_private:
        return None
    try:
        addresses = resolve(parts.hostname, port)
    except (OSError, UnicodeError):
        return f"the host {parts.hostname!r} could not be resolved"
    refused = [a for a in addresses if not address_allowed(a)]
    if refused:
        return (
            f"resolves to a loopback, link-local or private address ({refused[0]}); "
            "set WEBHOOK_ALLOW_PRIVATE=true to allow it"
        )
    return None


# --- signing ------------------------------------------------------------------------------------


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, message_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` header value for one attempt (Standard Webhooks, v1)."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.{body}".encode()
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


# --- endpoints ----------------------------------------------------------------------------------


def create_endpoint(
    account_id: uuid.UUID, url: str, events: Iterable[str] | None
) -> tuple[WebhookEndpoint, str]:
    """Register a webhook endpoint for the account; return it and its secret (shown once).

    Raises InvalidRequestError when the URL breaks the address rule, an event type is unknown,
    or the account already has MAX_ENDPOINTS_PER_ACCOUNT endpoints.
    """
    problem = url_problem(url, bool(current_app.config.get("WEBHOOK_ALLOW_PRIVATE")))
    if problem is not None:
        raise InvalidRequestError(f"url: {problem}", code="webhook_url_refused")
    chosen = list(dict.fromkeys(events)) if events is not None else list(EVENT_TYPES)
    unknown = [e for e in chosen if e not in EVENT_TYPES]
    if unknown or not chosen:
        raise InvalidRequestError(f"events: each must be one of {', '.join(EVENT_TYPES)}")
    secret = new_secret()
    with write_transaction() as session:
        count = len(
            session.scalars(
                select(WebhookEndpoint.id).where(WebhookEndpoint.account_id == account_id)
            ).all()
        )
        if count >= MAX_ENDPOINTS_PER_ACCOUNT:
            raise InvalidRequestError(
                f"an account has at most {MAX_ENDPOINTS_PER_ACCOUNT} webhook endpoints",
                code="too_many_webhooks",
            )
        endpoint = WebhookEndpoint(
            id=uuid7(),
            account_id=account_id,
            url=url,
            events=chosen,
            secret=secret,
            created_at=utcnow(),
        )
        session.add(endpoint)
    return endpoint, secret


def list_endpoints(account_id: uuid.UUID) -> list[WebhookEndpoint]:
    """The account's endpoints, oldest first."""
    query = (
        select(WebhookEndpoint)
        .where(WebhookEndpoint.account_id == account_id)
        .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
    )
    return list(db.session.scalars(query))


def get_endpoint(account_id: uuid.UUID, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    """The account's endpoint; raises NotFoundError for a missing or foreign one."""
    endpoint = db.session.scalar(
        select(WebhookEndpoint).where(
            WebhookEndpoint.id == endpoint_id, WebhookEndpoint.account_id == account_id
        )
    )
    if endpoint is None:
        raise NotFoundError("webhook not found", code="webhook_not_found")
    return endpoint


def delete_endpoint(account_id: uuid.UUID, endpoint_id: uuid.UUID) -> None:
    """Delete the account's endpoint and its deliveries (pending ones are not sent any more).

    Raises NotFoundError.
    """
    with write_transaction() as session:
        found = session.scalar(
            select(WebhookEndpoint.id).where(
                WebhookEndpoint.id == endpoint_id, WebhookEndpoint.account_id == account_id
            )
        )
        if found is None:
            raise NotFoundError("webhook not found", code="webhook_not_found")
        session.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id))
        session.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id))


def list_deliveries(
    account_id: uuid.UUID, endpoint_id: uuid.UUID, limit: int
) -> list[WebhookDelivery]:
    """The endpoint's most recent deliveries, newest first; raises NotFoundError."""
    get_endpoint(account_id, endpoint_id)
    query = (
        select(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint_id)
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
        .limit(limit)
    )
    return list(db.session.scalars(query))


# --- the queue ----------------------------------------------------------------------------------


def enqueue_for_run(session: Session, run: Run, run_json: dict[str, Any]) -> int:
    """Queue ``run.<status>`` for every endpoint of the run's account that wants it.

    Call it inside the transaction that made the run terminal: the rows commit (or roll back)
    with the transition. ``run_json`` is the Run as the API shows it (the payload's
    ``data.run``). Returns how many deliveries were queued; 0 for a run that is not terminal.
    """
    event_type = f"run.{run.status}"
    if event_type not in EVENT_TYPES:
        return 0
    endpoints = session.scalars(
        select(WebhookEndpoint).where(WebhookEndpoint.account_id == run.account_id)
    ).all()
    wanted = [e for e in endpoints if event_type in (e.events or [])]
    if not wanted:
        return 0
    now = utcnow()
    stamp = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
    body = json.dumps(
        {"type": event_type, "timestamp": stamp, "data": {"run": run_json}},
        separators=(",", ":"),
        ensure_ascii=False,
    )
    for endpoint in wanted:
        already = session.scalar(
            select(WebhookDelivery.id).where(
                WebhookDelivery.endpoint_id == endpoint.id,
                WebhookDelivery.run_id == run.id,
                WebhookDelivery.event_type == event_type,
            )
        )
        if already is not None:
            continue
        session.add(
            WebhookDelivery(
                id=uuid7(),
                message_id=f"msg_{uuid.uuid4().hex}",
                endpoint_id=endpoint.id,
                run_id=run.id,
                event_type=event_type,
                payload=body,
                state="pending",
                attempts=0,
                next_attempt_at=now,
                attempt_log=[],
                created_at=now,
            )
        )
    return len(wanted)
