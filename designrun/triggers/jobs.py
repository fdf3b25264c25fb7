"""The Daytona job request (API.md § The Daytona job request)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests

from designrun import observability
from designrun.auth import runner_tokens
from designrun.models import Run


class TriggerError(Exception):
    """The job request failed (network error or non-2xx); the message says why, no secrets."""


def callback_url(origin: str, run_id: object) -> str:
    """``{origin}/api/runner/runs/{runId}``, without a double slash when origin ends in '/'."""
    return f"{origin.rstrip('/')}/api/runner/runs/{run_id}"


def job_body(config: Mapping[str, Any], run: Run, origin: str) -> dict[str, Any]:
    """The JSON body of the job request, with a freshly minted run-scoped token.

    ``runnerSecret`` carries the run-scoped token too, never the shared secret: an old runner
    that sends it back as its bearer keeps working, and a leaked request exposes one run only.
    """
    token, _ = runner_tokens.mint(config["RUNNER_AUTH_SECRET"], run.id, config["RUNNER_TOKEN_TTL"])
    body = {
        "runId": str(run.id),
        "accountId": str(run.account_id),
        "prompt": run.prompt,
        "config": run.config or {},
        "callbackUrl": callback_url(config.get("EXPO_PUBLIC_WORKER_ORIGIN") or origin, run.id),
        "runnerSecret": token,
        "runnerToken": token,
    }
    # The X-Request-ID of the request that created the run (an addition: docs/operations.md);
    # designrun.runner sends it back on every callback.
    request_id = observability.current_request_id()
    if request_id is not None:
        body["requestId"] = request_id
    return body


def send_job(config: Mapping[str, Any], run: Run, origin: str) -> None:
    """POST the job to ``{DAYTONA_API_URL}/jobs``; raise TriggerError unless it answers 2xx."""
    url = f"{config['DAYTONA_API_URL'].rstrip('/')}/jobs"
    headers = {"Content-Type": "application/json"}
    if config.get("DAYTONA_API_KEY"):
        headers["Authorization"] = f"Bearer {config['DAYTONA_API_KEY']}"
    request_id = observability.current_request_id()
    if request_id is not None:
        headers[observability.REQUEST_ID_HEADER] = request_id
    try:
        response = requests.post(
            url,
            json=job_body(config, run, origin),
            headers=headers,
            timeout=config["TRIGGER_TIMEOUT"],
        )
    except requests.RequestException as exc:
        raise TriggerError(f"Daytona could not be reached: {type(exc).__name__}") from None
    if not 200 <= response.status_code < 300:
        raise TriggerError(f"Daytona answered HTTP {response.status_code}")
