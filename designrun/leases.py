"""Row leases: how several processes (and hosts) share work kept in database rows.

A row that one process works on carries ``claimed_until``. A process takes the row with one
conditional UPDATE (``take``) that succeeds only while the row is free (never claimed, or the
last lease ran out), so exactly one contender wins; the time it wrote is its fencing token:
later writes are conditional on ``claimed_until`` still being that value, and fail once the
lease was lost to another process. Used by the dispatcher, the Daytona sandbox watchdog and
orphan sweep, webhook deliveries and the storage housekeeping.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, or_, update
from sqlalchemy.orm import Session


def free(model: Any, now: datetime) -> ColumnElement[bool]:
    """The condition that nobody holds ``model``'s row lease at ``now``."""
    return or_(model.claimed_until.is_(None), model.claimed_until < now)


def take(
    session: Session, model: Any, *where: ColumnElement[bool], now: datetime, lease: datetime
) -> bool:
    """Set ``claimed_until = lease`` on the row ``where`` selects if its lease is free at
    ``now``; True when this process now holds it (in ``session``'s transaction)."""
    result: Any = session.execute(
        update(model).where(*where, free(model, now)).values(claimed_until=lease)
    )
    return bool(result.rowcount == 1)
