"""Runner triggers: the outbox dispatcher and the backends that start a runner for a run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def selected_backend(config: Mapping[str, Any]) -> str | None:
    """The backend new runs are sent to: ``daytona`` when DAYTONA_API_URL is set.

    None means no runner is started: the run stays ``queued`` until a runner reports.
    """
    if config.get("DAYTONA_API_URL"):
        return "daytona"
    return None
