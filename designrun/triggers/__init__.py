"""Runner triggers: the outbox dispatcher and the backends that start a runner for a run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def selected_backend(config: Mapping[str, Any]) -> str | None:
    """The backend new runs are sent to (API.md § Environment).

    RUNNER_BACKEND when set (``none`` gives None: no runner is started and runs stay ``queued``
    until some runner reports); otherwise ``daytona`` when DAYTONA_API_URL is set, else
    ``local``, the built-in runner on this host.
    """
    backend = config.get("RUNNER_BACKEND")
    if backend == "none":
        return None
    if backend:
        return str(backend)
    return "daytona" if config.get("DAYTONA_API_URL") else "local"


def attempt_seconds(config: Mapping[str, Any]) -> float:
    """How long one trigger attempt may take, which its lease must cover.

    TRIGGER_TIMEOUT for a job request; a Daytona sandbox launch waits up to
    DAYTONA_CREATE_TIMEOUT for the sandbox to start, plus a few bounded API calls around it.
    """
    seconds = float(config["TRIGGER_TIMEOUT"])
    if selected_backend(config) == "daytona-sdk":
        seconds = max(seconds, float(config["DAYTONA_CREATE_TIMEOUT"]) + 240.0)
    return seconds
