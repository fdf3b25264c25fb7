"""SQLAlchemy models, one module per aggregate."""

from designrun.models.accounts import Account, SignInFailure, User, UserSession
from designrun.models.runs import TERMINAL, Artifact, Run, RunEvent, RunStatus
from designrun.models.storage import StorageDeletion, StorageSweep
from designrun.models.triggers import Trigger

__all__ = [
    "TERMINAL",
    "Account",
    "Artifact",
    "Run",
    "RunEvent",
    "RunStatus",
    "SignInFailure",
    "StorageDeletion",
    "StorageSweep",
    "Trigger",
    "User",
    "UserSession",
]
