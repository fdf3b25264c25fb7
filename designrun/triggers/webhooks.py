"""The webhook sweep: sends queued deliveries (services/webhooks.py) with retries for a day.

The dispatcher's shape (STYLE.md § Background work, triggers/dispatcher.py):
1. ``run_once`` finds due pending rows and leases each one with a conditional UPDATE of
   ``claimed_until``, so one process only sends it, whatever number of workers or hosts sweep.
2. Before the request, the lease is renewed under the old value (fencing): a task whose lease
   ran out, because it waited or its process stalled, stops there.
3. The outcome is written only while the lease is still ours. 2xx: ``delivered``. Anything
   else (non-2xx, a redirect, a network error, a timeout, an address the rule refuses): the next
   attempt is due after the backoff, until the delivery is a day old: then ``failed``.

A process killed mid-delivery leaves the row leased and pending: once the lease runs out any
sweeper sends it again with the same ``webhook-id`` (at-least-once; receivers de-duplicate on
it, as Standard Webhooks says). The row itself is never duplicated.
"""

from __future__ import annotations

import ipaddress
import logging
import time
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from flask import Flask
from requests.adapters import HTTPAdapter
from sqlalchemy import select, update

from designrun import leases, observability
from designrun.database import write_transaction
from designrun.extensions import db
from designrun.models import WebhookDelivery, WebhookEndpoint
from designrun.models.types import utcnow
from designrun.services import webhooks

log = logging.getLogger(__name__)

BATCH = 20
LEASE_MARGIN = 5.0
KEPT_ATTEMPTS = 10
# Seconds before attempt 2, 3, ...: about 23.7 hours in all; the last repeats until the
# delivery is WEBHOOK_RETRY_FOR seconds old.
RETRY_DELAYS = (5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 28800)
USER_AGENT = "designrun-webhooks/1"


def settings(config: Mapping[str, Any]) -> tuple[float, tuple[float, ...], float]:
    """(timeout, retry delays, give-up age) from the app config (tests shorten them)."""
    return (
        float(config.get("WEBHOOK_TIMEOUT", 10.0)),
        tuple(config.get("WEBHOOK_RETRY_DELAYS", RETRY_DELAYS)),
        float(config.get("WEBHOOK_RETRY_FOR", 86400.0)),
    )


def every(config: Mapping[str, Any]) -> float:
    """How often a serving process looks for due deliveries."""
    return float(config.get("WEBHOOK_SWEEP_INTERVAL", 2.0))


def run_once(app: Flask) -> int:
    """Lease every due delivery and send it inline; return how many were attempted."""
    timeout, _, _ = settings(app.config)
    claimed: list[tuple[uuid.UUID, datetime]] = []
    with app.app_context():
        try:
            now = utcnow()
            due = db.session.scalars(
                select(WebhookDelivery.id)
                .where(
                    WebhookDelivery.state == "pending",
                    WebhookDelivery.next_attempt_at <= now,
                    leases.free(WebhookDelivery, now),
                )
                .order_by(WebhookDelivery.next_attempt_at)
                .limit(BATCH)
            ).all()
            db.session.rollback()
            for delivery_id in due:
                lease = utcnow() + timedelta(seconds=timeout + LEASE_MARGIN)
                if _claim(delivery_id, now, lease):
                    claimed.append((delivery_id, lease))
        finally:
            db.session.remove()
        for delivery_id, held in claimed:
            try:
                deliver(app, delivery_id, held)
            except Exception:
                log.exception("webhook delivery %s: unexpected failure; retried later", delivery_id)
            finally:
                db.session.remove()
    return len(claimed)


def _claim(delivery_id: uuid.UUID, now: datetime, lease: datetime) -> bool:
    with write_transaction() as session:
        pending = (WebhookDelivery.id == delivery_id, WebhookDelivery.state == "pending")
        return leases.take(session, WebhookDelivery, *pending, now=now, lease=lease)


def _fenced(delivery_id: uuid.UUID, held: datetime, **values: Any) -> bool:
    """Set ``values`` if the lease is still ``held`` (the fencing token); False otherwise."""
    with write_transaction() as session:
        result: Any = session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, WebhookDelivery.claimed_until == held)
            .values(**values)
        )
    return bool(result.rowcount == 1)


def deliver(app: Flask, delivery_id: uuid.UUID, held: datetime) -> None:
    """Send one leased delivery and record the outcome (inside an app context)."""
    timeout, delays, retry_for = settings(app.config)
    delivery = db.session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.state != "pending":
        return
    endpoint = db.session.get(WebhookEndpoint, delivery.endpoint_id)
    if endpoint is None:
        return
    url, secret, message_id, body = (
        endpoint.url,
        endpoint.secret,
        delivery.message_id,
        delivery.payload,
    )
    attempts, created_at, log_entries = delivery.attempts, delivery.created_at, delivery.attempt_log
    db.session.commit()  # hold no read transaction over the network call
    renewed = utcnow() + timedelta(seconds=timeout + LEASE_MARGIN)
    if not _fenced(delivery_id, held, claimed_until=renewed):
        return  # another sweeper took the row over
    held = renewed
    status_code, error = _send(app.config, url, secret, message_id, body, timeout)
    now = utcnow()
    attempts += 1
    entry = {"at": now.isoformat(timespec="milliseconds") + "Z", "statusCode": status_code}
    entry["error"] = error
    values: dict[str, Any] = {
        "attempts": attempts,
        "last_attempt_at": now,
        "last_status_code": status_code,
        "last_error": error,
        "attempt_log": [*(log_entries or []), entry][-KEPT_ATTEMPTS:],
        "claimed_until": None,
    }
    if error is None:
        values.update(state="delivered", delivered_at=now)
        outcome = "delivered"
    else:
        delay = delays[min(attempts - 1, len(delays) - 1)] if delays else 60.0
        next_attempt = now + timedelta(seconds=delay)
        if (next_attempt - created_at).total_seconds() > retry_for:
            values.update(state="failed")
            outcome = "failed"
        else:
            values.update(next_attempt_at=next_attempt)
            outcome = "refused" if status_code is None and "refused" in error else "retry"
    observability.webhook_delivery(outcome)
    if not _fenced(delivery_id, held, **values):
        log.warning("webhook delivery %s: lease lost before its outcome was saved", delivery_id)
        return
    log.info(
        "webhook %s to endpoint %s: %s (attempt %s%s)",
        message_id,
        endpoint.id,
        outcome,
        attempts,
        f", {error}" if error else "",
        extra={"run_id": str(delivery.run_id)},
    )


class _PinnedAdapter(HTTPAdapter):
    """Connects to an already-checked address while TLS still verifies the URL's host name."""

    def __init__(self, hostname: str) -> None:
        self._hostname = hostname
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["server_hostname"] = self._hostname
        kwargs["assert_hostname"] = self._hostname
        super().init_poolmanager(*args, **kwargs)


def _target(url: str, allow_private: bool) -> tuple[str, str | None, str | None]:
    """(URL to connect to, pinned host name or None, refusal or None) under the address rule."""
    if allow_private:
        return url, None, None
    problem = webhooks.url_problem(url, allow_private=False)
    if problem is not None:
        return url, None, f"refused: {problem}"
    parts = urlsplit(url)
    hostname = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = webhooks.resolve(hostname, port)[0]
    host = f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc)), hostname, None


def _send(
    config: Mapping[str, Any], url: str, secret: str, message_id: str, body: str, timeout: float
) -> tuple[int | None, str | None]:
    """POST one signed attempt; (status code or None, error or None when delivered)."""
    try:
        target, pinned, refusal = _target(url, bool(config.get("WEBHOOK_ALLOW_PRIVATE")))
    except (OSError, UnicodeError, ValueError) as exc:
        return None, f"address lookup failed: {type(exc).__name__}"
    if refusal is not None:
        return None, refusal
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": webhooks.sign(secret, message_id, timestamp, body),
    }
    with requests.Session() as session:
        session.trust_env = False  # no proxy from the environment: the address rule is ours
        if pinned is not None:
            headers["Host"] = urlsplit(url).netloc.rpartition("@")[2]
            session.mount(target.split("://", 1)[0] + "://", _PinnedAdapter(pinned))
        try:
            response = session.post(
                target,
                data=body.encode("utf-8"),
                headers=headers,
                timeout=(timeout, timeout),
                allow_redirects=False,  # a redirect could lead anywhere: it is a failure
            )
        except requests.Timeout:
            return None, "timed out"
        except requests.RequestException as exc:
            return None, f"network error: {type(exc).__name__}"
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"HTTP {response.status_code}"
