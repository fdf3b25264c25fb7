"""Helpers for the webhook tests: endpoints, finishing runs, reading deliveries."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Flask
from sqlalchemy import select

from designrun.extensions import db
from designrun.models import WebhookDelivery
from tests.factories import bearer, make_run, runner_headers


def add_webhook(app: Flask, token: str, url: str, **body: Any) -> tuple[dict[str, Any], str]:
    r = app.test_client().post(
        "/api/design/webhooks", json={"url": url, **body}, headers=bearer(token)
    )
    assert r.status_code == 201, r.get_json()
    return r.get_json()["webhook"], r.get_json()["secret"]


def finish_run(app: Flask, user: Any, status: str = "completed") -> Any:
    """A running run of ``user`` that its runner then reports ``status`` for (via the API)."""
    run = make_run(app, user, status="running")
    r = app.test_client().post(
        f"/api/runner/runs/{run.id}/status",
        json={"status": status},
        headers=runner_headers(app, run),
    )
    assert r.status_code == 200, r.get_json()
    return run


def deliveries(app: Flask) -> list[WebhookDelivery]:
    with app.app_context():
        try:
            rows = list(db.session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))
            db.session.expunge_all()
            return rows
        finally:
            db.session.remove()


def update_delivery(app: Flask, delivery_id: uuid.UUID, **values: Any) -> None:
    with app.app_context():
        try:
            row = db.session.get(WebhookDelivery, delivery_id)
            assert row is not None
            for name, value in values.items():
                setattr(row, name, value)
            db.session.commit()
        finally:
            db.session.remove()
