"""A small registry that lets other modules react to run transitions and new work.

Services never import triggers, webhooks or sandboxes (the arrow points api → services →
models; triggers → services). Instead those modules register here:

- ``on_transition(func)``: ``func(run, transition)`` is called inside the transaction that
  changes the run's status, after the transition row is flushed. Write rows in the same
  session (an outbox: webhook deliveries, sandbox deletions); raising rolls the change back.
- ``after_transition(func)``: ``func(info)`` is called after that transaction committed, with a
  plain ``TransitionInfo`` (no ORM object, no session). Best effort: for side effects outside
  the database that a sweep would also catch (signalling a local process). Exceptions are logged.
- ``on_work(func)``: ``func(app)`` is called after a transaction that wrote a trigger row
  commits (the dispatcher registers its ``wake``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from flask import Flask

    from designrun.models import Run, RunTransition

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TransitionInfo:
    """A committed status change, as plain values."""

    run_id: uuid.UUID
    account_id: uuid.UUID
    from_status: str
    to_status: str
    by: str
    reason: str | None
    at: datetime
    dispatch_backend: str | None


InTransaction = Callable[["Run", "RunTransition"], None]
AfterCommit = Callable[[TransitionInfo], None]
WorkHook = Callable[["Flask"], None]

_in_transaction: list[InTransaction] = []
_after_commit: list[AfterCommit] = []
_work: list[WorkHook] = []
_PENDING = "designrun.transitions"


def on_transition(func: InTransaction) -> InTransaction:
    """Register ``func(run, transition)``, called inside each status change's transaction."""
    if func not in _in_transaction:
        _in_transaction.append(func)
    return func


def after_transition(func: AfterCommit) -> AfterCommit:
    """Register ``func(info)``, called after each status change commits (best effort)."""
    if func not in _after_commit:
        _after_commit.append(func)
    return func


def on_work(func: WorkHook) -> WorkHook:
    """Register ``func(app)``, called when new work (a trigger row) has been committed."""
    if func not in _work:
        _work.append(func)
    return func


def transition_recorded(session: Session, run: Run, transition: RunTransition) -> None:
    """Run the in-transaction hooks and queue the after-commit ones (services/lifecycle.py)."""
    for func in list(_in_transaction):
        func(run, transition)
    info = TransitionInfo(
        run_id=run.id,
        account_id=run.account_id,
        from_status=transition.from_status,
        to_status=transition.to_status,
        by=transition.by,
        reason=transition.reason,
        at=transition.at,
        dispatch_backend=run.dispatch_backend,
    )
    session.info.setdefault(_PENDING, []).append(info)


def work_committed(app: Flask) -> None:
    """Tell the registered listeners that a trigger row was committed."""
    for func in list(_work):
        try:
            func(app)
        except Exception:
            log.exception("work hook %s failed", getattr(func, "__name__", func))


@event.listens_for(Session, "after_commit")
def _fire_after_commit(session: Session) -> None:
    pending: list[TransitionInfo] = session.info.pop(_PENDING, [])
    for info in pending:
        for func in list(_after_commit):
            try:
                func(info)
            except Exception:
                log.exception("run_id=%s: after-transition hook failed", info.run_id)


@event.listens_for(Session, "after_rollback")
def _forget_on_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)


def _reset_for_tests() -> dict[str, Any]:
    """The registries (tests register and unregister their own hooks through these lists)."""
    return {"in_transaction": _in_transaction, "after_commit": _after_commit, "work": _work}
