"""The OpenAPI operations of the webhook endpoints and of the operations endpoints.

Webhooks: docs/api.md § Webhooks. /livez, /readyz and /metrics: docs/operations.md.
"""

from __future__ import annotations

from typing import Any

from designrun.api import schemas as s
from designrun.api import webhook_schemas as w
from designrun.api.openapi_common import (
    USER,
    json_content,
    query_parameters,
    ref,
    responses,
)

_WEBHOOK_ID = {
    "name": "webhookId",
    "in": "path",
    "required": True,
    "description": "The webhook endpoint's id (a UUID)",
    "schema": {"type": "string", "format": "uuid"},
}


def ops_operations() -> dict[str, dict[str, Any]]:
    """Webhooks (docs/api.md § Webhooks) and the operations endpoints (docs/operations.md)."""
    plain = {"type": "object", "additionalProperties": True}
    return {
        "/api/design/webhooks": {
            "post": {
                "operationId": "createWebhook",
                "tags": ["webhooks"],
                "security": USER,
                "summary": "Register a webhook endpoint",
                "description": (
                    "Standard Webhooks deliveries of run.completed / run.failed / run.cancelled "
                    "to an http(s) URL; private, loopback and link-local addresses are refused "
                    "unless WEBHOOK_ALLOW_PRIVATE=true. The whsec_ secret is shown only here."
                ),
                "requestBody": {"required": True, **json_content(ref(w.CreateWebhook))},
                "responses": responses(201, ref(w.WebhookCreatedOut), (401, 403)),
            },
            "get": {
                "operationId": "listWebhooks",
                "tags": ["webhooks"],
                "security": USER,
                "summary": "List the account's webhook endpoints",
                "description": "Oldest first, without their secrets.",
                "responses": responses(200, ref(w.WebhookListOut), (401,)),
            },
        },
        "/api/design/webhooks/{webhookId}": {
            "delete": {
                "operationId": "deleteWebhook",
                "tags": ["webhooks"],
                "security": USER,
                "summary": "Delete a webhook endpoint",
                "description": "Its pending deliveries are not sent any more.",
                "parameters": [_WEBHOOK_ID],
                "responses": responses(200, ref(s.OkOut), (401, 403, 404)),
            }
        },
        "/api/design/webhooks/{webhookId}/deliveries": {
            "get": {
                "operationId": "listWebhookDeliveries",
                "tags": ["webhooks"],
                "security": USER,
                "summary": "The endpoint's delivery log",
                "description": (
                    "Newest first: state, attempts, last status code and error, next retry, "
                    "and the last attempts."
                ),
                "parameters": [_WEBHOOK_ID, *query_parameters(w.ListDeliveriesQuery)],
                "responses": responses(200, ref(w.DeliveryListOut), (401, 404)),
            }
        },
        "/livez": {
            "get": {
                "operationId": "livez",
                "tags": ["operations"],
                "security": [],
                "summary": "Liveness",
                "description": "200 while the process serves requests; checks nothing else.",
                "responses": {"200": {"description": "Alive", **json_content(plain)}},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "tags": ["operations"],
                "security": [],
                "summary": "Readiness",
                "description": (
                    "200 when the database answers, migrations are current and the storage is "
                    "writable; else 503 with the failing checks named (code not_ready)."
                ),
                "responses": {
                    "200": {"description": "Ready", **json_content(plain)},
                    "503": {"description": "Not ready", **json_content(ref(s.ErrorOut))},
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "tags": ["operations"],
                "security": [{"metricsBearer": []}, {}],
                "summary": "Prometheus metrics",
                "description": (
                    "Text exposition format, aggregated over this host's workers. Needs "
                    "the METRICS_TOKEN bearer when that is set."
                ),
                "responses": {
                    "200": {
                        "description": "Metrics",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "401": {
                        "description": "METRICS_TOKEN required",
                        **json_content(ref(s.ErrorOut)),
                    },
                },
            }
        },
    }
