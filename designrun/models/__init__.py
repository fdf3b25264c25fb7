"""SQLAlchemy models, one module per aggregate."""

from designrun.models.accounts import Account, SignInFailure, User, UserSession
from designrun.models.runs import (
    TERMINAL,
    Actor,
    Artifact,
    DispatchState,
    FailureReason,
    Run,
    RunEvent,
    RunStatus,
    RunTransition,
)
from designrun.models.sandboxes import DaytonaSandbox, SandboxState, SweepLease
from designrun.models.storage import StorageDeletion, StorageSweep
from designrun.models.triggers import Trigger
from designrun.models.webhooks import WebhookDelivery, WebhookEndpoint

__all__ = [
    "TERMINAL",
    "Account",
    "Actor",
    "Artifact",
    "DaytonaSandbox",
    "DispatchState",
    "FailureReason",
    "Run",
    "RunEvent",
    "RunStatus",
    "RunTransition",
    "SandboxState",
    "SignInFailure",
    "StorageDeletion",
    "StorageSweep",
    "SweepLease",
    "Trigger",
    "User",
    "UserSession",
    "WebhookDelivery",
    "WebhookEndpoint",
]
