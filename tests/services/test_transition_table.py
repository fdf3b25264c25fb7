"""The table of allowed status changes (services/run_states.py ALLOWED), row by row."""

from __future__ import annotations

import itertools

import pytest

from designrun.models import Actor, FailureReason, RunStatus
from designrun.services.run_states import ALLOWED, allowed, reason_for

Q, R, C, F, X = (RunStatus(s) for s in ("queued", "running", "completed", "failed", "cancelled"))
U, RN, S = Actor.USER, Actor.RUNNER, Actor.SYSTEM
FR = FailureReason

EXPECTED = {
    (Q, R, RN, None),
    (Q, C, RN, None),
    (Q, X, RN, None),
    (Q, X, U, FR.CANCELLED_BY_USER),
    (Q, F, RN, FR.AGENT_ERROR),
    (Q, F, S, FR.DISPATCH_FAILED),
    (Q, F, S, FR.START_TIMEOUT),
    (Q, F, S, FR.RUNNER_EXITED),
    (R, C, RN, None),
    (R, X, RN, None),
    (R, X, U, FR.CANCELLED_BY_USER),
    (R, F, RN, FR.AGENT_ERROR),
    (R, F, S, FR.RUNNER_LOST),
    (R, F, S, FR.RUNNER_EXITED),
}


@pytest.mark.parametrize(
    ("current", "new", "by", "reason"),
    list(itertools.product(RunStatus, RunStatus, Actor, [None, *FailureReason])),
)
def test_every_combination_is_allowed_exactly_when_the_table_says(current, new, by, reason):
    assert allowed(current, new, by, reason) == ((current, new, by, reason) in EXPECTED)


def test_nothing_leaves_a_terminal_status():
    assert not [key for key in ALLOWED if key[0].terminal]


def test_reasons_of_runner_and_user_changes():
    assert reason_for(F, RN) == FR.AGENT_ERROR
    assert reason_for(X, U) == FR.CANCELLED_BY_USER
    assert reason_for(X, RN) is None and reason_for(C, RN) is None
