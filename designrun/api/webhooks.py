"""Webhook endpoints of the user API (docs/api.md § Webhooks), on the session-guarded blueprint.

The routes live on ``design_api`` so that its guard (session, Origin check) covers them; this
module only adds them.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import g
from sqlalchemy.orm import object_session

from designrun.api import serializers
from designrun.api.design import design_api
from designrun.api.parsing import parse_body, parse_query
from designrun.api.serializers import timestamp
from designrun.api.webhook_schemas import CreateWebhook, ListDeliveriesQuery
from designrun.models import TERMINAL, Run, RunTransition, WebhookDelivery, WebhookEndpoint
from designrun.services import hooks, webhooks


@hooks.on_transition
def queue_deliveries(run: Run, transition: RunTransition) -> None:
    """A run that just became terminal has its webhook deliveries queued in its transaction."""
    if transition.to_status in TERMINAL and transition.from_status not in TERMINAL:
        session = object_session(run)
        if session is not None:
            webhooks.enqueue_for_run(session, run, serializers.run(run))


def webhook_json(item: WebhookEndpoint) -> dict[str, Any]:
    """An endpoint as the API shows it: never its secret."""
    return {
        "id": str(item.id),
        "url": item.url,
        "events": list(item.events or []),
        "createdAt": timestamp(item.created_at),
    }


def delivery_json(item: WebhookDelivery) -> dict[str, Any]:
    """A delivery as the delivery log shows it (the payload and its signature are not shown)."""
    return {
        "id": str(item.id),
        "webhookId": item.message_id,
        "eventType": item.event_type,
        "runId": str(item.run_id),
        "state": item.state,
        "attempts": item.attempts,
        "lastStatusCode": item.last_status_code,
        "lastError": item.last_error,
        "lastAttemptAt": timestamp(item.last_attempt_at),
        "nextAttemptAt": timestamp(item.next_attempt_at) if item.state == "pending" else None,
        "deliveredAt": timestamp(item.delivered_at),
        "createdAt": timestamp(item.created_at),
        "recentAttempts": list(item.attempt_log or []),
    }


@design_api.post("/webhooks")
def create_webhook() -> tuple[dict[str, Any], int]:
    body = parse_body(CreateWebhook)
    endpoint, secret = webhooks.create_endpoint(g.account_id, body.url, body.events)
    return {"ok": True, "webhook": webhook_json(endpoint), "secret": secret}, 201


@design_api.get("/webhooks")
def list_webhooks() -> dict[str, Any]:
    endpoints = webhooks.list_endpoints(g.account_id)
    return {"ok": True, "webhooks": [webhook_json(e) for e in endpoints]}


@design_api.delete("/webhooks/<uuid:webhook_id>")
def delete_webhook(webhook_id: uuid.UUID) -> dict[str, Any]:
    webhooks.delete_endpoint(g.account_id, webhook_id)
    return {"ok": True}


@design_api.get("/webhooks/<uuid:webhook_id>/deliveries")
def list_deliveries(webhook_id: uuid.UUID) -> dict[str, Any]:
    query = parse_query(ListDeliveriesQuery)
    deliveries = webhooks.list_deliveries(g.account_id, webhook_id, query.limit)
    return {"ok": True, "deliveries": [delivery_json(d) for d in deliveries]}
