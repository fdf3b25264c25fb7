"""SQLAlchemy models, one module per aggregate."""

from designrun.models.accounts import Account, SignInFailure, User, UserSession
from designrun.models.runs import TERMINAL, Artifact, Run, RunEvent, RunStatus
from designrun.models.sandboxes import DaytonaSandbox, SandboxState, SweepLease
from designrun.models.triggers import Trigger

__all__ = [
    "TERMINAL",
    "Account",
    "Artifact",
    "DaytonaSandbox",
    "Run",
    "RunEvent",
    "RunStatus",
    "SandboxState",
    "SignInFailure",
    "SweepLease",
    "Trigger",
    "User",
    "UserSession",
]
