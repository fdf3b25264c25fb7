"""Runner triggers: the outbox dispatcher and the backends that start a runner for a run."""

from __future__ import annotations

from designrun.config import runner_backend as selected_backend

__all__ = ["selected_backend"]
