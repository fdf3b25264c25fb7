"""Runner triggers: the outbox dispatcher and the backends that start a runner for a run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from designrun.config import runner_backend as selected_backend

__all__ = ["attempt_seconds", "selected_backend"]


def attempt_seconds(config: Mapping[str, Any]) -> float:
    """How long one trigger attempt may take, which its lease must cover.

    TRIGGER_TIMEOUT for a job request; a Daytona sandbox launch waits up to
    DAYTONA_CREATE_TIMEOUT for the sandbox to start, plus a few bounded API calls around it.
    """
    seconds = float(config["TRIGGER_TIMEOUT"])
    if selected_backend(config) == "daytona":
        seconds = max(seconds, float(config["DAYTONA_CREATE_TIMEOUT"]) + 240.0)
    return seconds
