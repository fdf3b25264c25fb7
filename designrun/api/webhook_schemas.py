"""Request and response models of the webhook endpoints (docs/api.md § Webhooks).

Kept beside schemas.py, in the same style: strict requests that ignore unknown fields, and
response models that feed /api/openapi.json.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from designrun.api.schemas import QueryModel, RequestModel, ResponseModel

WebhookEvent = Literal["run.completed", "run.failed", "run.cancelled"]


class CreateWebhook(RequestModel):
    url: Annotated[str, Field(min_length=1, max_length=2048)]
    events: Annotated[list[WebhookEvent], Field(min_length=1, max_length=3)] | None = None


class ListDeliveriesQuery(QueryModel):
    limit: Annotated[int, Field(ge=1, le=100)] = 50


class WebhookOut(ResponseModel):
    id: str
    url: str
    events: list[WebhookEvent]
    createdAt: datetime


class WebhookCreatedOut(ResponseModel):
    ok: Literal[True]
    webhook: WebhookOut
    secret: Annotated[str, Field(pattern=r"^whsec_")]


class WebhookListOut(ResponseModel):
    ok: Literal[True]
    webhooks: list[WebhookOut]


class AttemptOut(ResponseModel):
    at: datetime
    statusCode: int | None
    error: str | None


class DeliveryOut(ResponseModel):
    id: str
    webhookId: str
    eventType: WebhookEvent
    runId: str
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    lastStatusCode: int | None
    lastError: str | None
    lastAttemptAt: datetime | None
    nextAttemptAt: datetime | None
    deliveredAt: datetime | None
    createdAt: datetime
    recentAttempts: list[AttemptOut]


class DeliveryListOut(ResponseModel):
    ok: Literal[True]
    deliveries: list[DeliveryOut]
