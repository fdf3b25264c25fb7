"""The run state machine, pure: no database, no Flask (API.md § Runs, Part 2 § Run lifecycle).

queued → running → completed | failed | cancelled; queued may also go straight to a terminal
status. Terminal runs accept only a repeat of their own status (an idempotent no-op); anything
else raises RunFinishedError, which is how a runner learns that its run was cancelled.

``ALLOWED`` is the one table of status changes: for each (from, to), who may make it and with
which failure reasons. services/lifecycle.py checks every change against it before recording it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from designrun.errors import InvalidRequestError, RunFinishedError
from designrun.models.runs import TERMINAL, Actor, FailureReason, RunStatus

Q, R = RunStatus.QUEUED, RunStatus.RUNNING
C, F, X = RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED
_RUNNER, _USER, _SYSTEM = Actor.RUNNER, Actor.USER, Actor.SYSTEM
_SYSTEM_FAILURES_QUEUED = (
    FailureReason.DISPATCH_FAILED,
    FailureReason.START_TIMEOUT,
    FailureReason.RUNNER_EXITED,
)
_SYSTEM_FAILURES_RUNNING = (FailureReason.RUNNER_LOST, FailureReason.RUNNER_EXITED)

# (from, to) → the (by, reason) pairs that may make that change. Nothing leaves a terminal
# status; a runner's own ``cancelled`` carries no reason (only a user's cancel is
# ``cancelled_by_user``), its ``failed`` is ``agent_error``.
ALLOWED: dict[tuple[RunStatus, RunStatus], frozenset[tuple[Actor, FailureReason | None]]] = {
    (Q, R): frozenset({(_RUNNER, None)}),
    (Q, C): frozenset({(_RUNNER, None)}),
    (Q, F): frozenset(
        {(_RUNNER, FailureReason.AGENT_ERROR), *((_SYSTEM, r) for r in _SYSTEM_FAILURES_QUEUED)}
    ),
    (Q, X): frozenset({(_RUNNER, None), (_USER, FailureReason.CANCELLED_BY_USER)}),
    (R, C): frozenset({(_RUNNER, None)}),
    (R, F): frozenset(
        {(_RUNNER, FailureReason.AGENT_ERROR), *((_SYSTEM, r) for r in _SYSTEM_FAILURES_RUNNING)}
    ),
    (R, X): frozenset({(_RUNNER, None), (_USER, FailureReason.CANCELLED_BY_USER)}),
}


def allowed(current: RunStatus, new: RunStatus, by: Actor, reason: FailureReason | None) -> bool:
    """True when ``by`` may move a run from ``current`` to ``new`` with ``reason``."""
    return (by, reason) in ALLOWED.get((current, new), frozenset())


def reason_for(new: RunStatus, by: Actor) -> FailureReason | None:
    """The failure reason of a runner's or user's own change (system changes name theirs)."""
    if new == RunStatus.FAILED and by == Actor.RUNNER:
        return FailureReason.AGENT_ERROR
    if new == RunStatus.CANCELLED and by == Actor.USER:
        return FailureReason.CANCELLED_BY_USER
    return None


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
