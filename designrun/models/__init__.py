"""SQLAlchemy models, one module per aggregate."""

from designrun.models.accounts import Account, SignInFailure, User, UserSession
from designrun.models.runs import TERMINAL, Artifact, Run, RunEvent, RunStatus
from designrun.models.triggers import Trigger
from designrun.models.webhooks import WebhookDelivery, WebhookEndpoint

__all__ = [
    "TERMINAL",
    "Account",
    "Artifact",
    "Run",
    "RunEvent",
    "RunStatus",
    "SignInFailure",
    "Trigger",
    "User",
    "UserSession",
    "WebhookDelivery",
    "WebhookEndpoint",
]
