"""The run state machine as a pure function (API.md § Runs: the state machine).

queued → running → completed | failed | cancelled; queued may also go straight to a terminal
status. Terminal runs accept only a repeat of their own status (an idempotent no-op); anything
else raises RunFinishedError, which is how a runner learns that its run was cancelled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from designrun.errors import InvalidRequestError, RunFinishedError
from designrun.models.runs import TERMINAL, RunStatus


@dataclass(frozen=True)
class Transition:
    """What an update does to a run. ``changed`` is False for an idempotent repeat."""

    status: RunStatus
    progress: float | None  # the new progress, or None to leave it as it is
    set_started: bool = False
    set_completed: bool = False
    changed: bool = True


def clamp_progress(value: float) -> float:
    """Clamp into [0, 1]; NaN and infinities are a client error, not a number to clamp."""
    if math.isnan(value) or math.isinf(value):
        raise InvalidRequestError("progress: must be a finite number")
    return min(1.0, max(0.0, float(value)))


def transition(current: RunStatus, status: RunStatus | None, progress: float | None) -> Transition:
    """Work out the effect of a runner's ``status``/``progress`` report on a run in ``current``.

    Raises InvalidRequestError when neither is given or the status is ``queued`` (not a status a
    runner may set), RunFinishedError when ``current`` is terminal and the report is not a repeat
    of that same terminal status.
    """
    if status is None and progress is None:
        raise InvalidRequestError("at least one of status and progress is required")
    if status == RunStatus.QUEUED:
        raise InvalidRequestError("status: 'queued' is not a status a runner may set")
    if current in TERMINAL:
        if status == current:
            return Transition(status=current, progress=None, changed=False)
        raise RunFinishedError(current.value)
    clamped = clamp_progress(progress) if progress is not None else None
    if status is None or status == current:
        return Transition(status=current, progress=clamped)
    if status == RunStatus.RUNNING:
        return Transition(status=status, progress=clamped, set_started=True)
    # A terminal status: completedAt is set; progress is 1 unless the update carried one.
    return Transition(
        status=status, progress=1.0 if clamped is None else clamped, set_completed=True
    )
