"""The state machine as a table of every (current status, update) pair (API.md § Runs)."""

from __future__ import annotations

import math

import pytest

from designrun.errors import InvalidRequestError, RunFinishedError
from designrun.models import RunStatus
from designrun.services.run_states import clamp_progress, transition

Q, R, C, F, X = (RunStatus(s) for s in ("queued", "running", "completed", "failed", "cancelled"))


@pytest.mark.parametrize(
    ("current", "status", "progress", "expected"),
    [
        # current, update status, update progress -> (status, progress, started, completed, changed)
        (Q, R, None, (R, None, True, False, True)),
        (Q, R, 0.2, (R, 0.2, True, False, True)),
        (Q, None, 0.3, (Q, 0.3, False, False, True)),
        (Q, C, None, (C, 1.0, False, True, True)),
        (Q, F, None, (F, 1.0, False, True, True)),
        (Q, X, 0.4, (X, 0.4, False, True, True)),
        (R, R, 0.5, (R, 0.5, False, False, True)),
        (R, None, 2.0, (R, 1.0, False, False, True)),
        (R, None, -1.0, (R, 0.0, False, False, True)),
        (R, C, None, (C, 1.0, False, True, True)),
        (R, F, 0.7, (F, 0.7, False, True, True)),
        (R, X, None, (X, 1.0, False, True, True)),
        (C, C, None, (C, None, False, False, False)),
        (C, C, 0.3, (C, None, False, False, False)),
        (F, F, None, (F, None, False, False, False)),
        (X, X, 0.9, (X, None, False, False, False)),
    ],
)
def test_allowed_transitions(current, status, progress, expected):
    result = transition(current, status, progress)
    got = (result.status, result.progress, result.set_started, result.set_completed, result.changed)
    assert got == expected


_UPDATES = [(R, None), (None, 0.5), (C, None), (F, None), (X, None), (R, 0.1)]


@pytest.mark.parametrize(
    ("current", "status", "progress"),
    # a repeat of the run's own terminal status is the idempotent case, tested above
    [(cur, st, pr) for cur in (C, F, X) for st, pr in _UPDATES if st != cur],
)
def test_any_other_change_on_a_terminal_run_raises_run_finished(current, status, progress):
    with pytest.raises(RunFinishedError) as info:
        transition(current, status, progress)
    assert info.value.extra == {"runStatus": current.value}
    assert info.value.status == 409


@pytest.mark.parametrize("current", list(RunStatus))
def test_queued_is_not_a_status_a_runner_may_set(current):
    with pytest.raises(InvalidRequestError):
        transition(current, Q, None)


def test_an_update_needs_status_or_progress():
    with pytest.raises(InvalidRequestError):
        transition(R, None, None)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_progress_is_invalid_not_clamped(value):
    with pytest.raises(InvalidRequestError):
        clamp_progress(value)
