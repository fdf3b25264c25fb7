"""Client library for designrun runners (API.md § Runner API).

Imports nothing server-side (no Flask, no models or services): a runner needs only ``requests``.

    from designrun.runner import RunnerClient, RunCancelled

    with RunnerClient.from_job(job) as run:
        run.set_status("running")
        run.event("log", "hello")
        run.set_status("completed")
"""

from designrun.runner.client import RunnerClient
from designrun.runner.wire import RunCancelled, RunnerError

__all__ = ["RunCancelled", "RunnerClient", "RunnerError"]
