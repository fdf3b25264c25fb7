"""A small runner for the kit's own tests: correct by default, broken on request.

    python tests/conformance/runner_under_test.py [--defect NAME] [--events N] [--seconds S]

It reads the job from DESIGNRUN_JOB (or stdin), reports ``running``, sends N events (three per
request, each with ``metadata.seq`` and an idempotency key), each batch then a progress report,
uploads one file, and finishes ``completed`` with ``eventCount`` and ``artifactCount``. It
retries connection errors, 503 and 429 (waiting ``Retry-After``), drops a request refused with
another 4xx, refreshes its token at half its life, and stops at a 409.

Each ``--defect`` breaks exactly one of those rules:

- ``no-keys``: events and the upload carry no idempotency key (a retry after a lost answer
  stores them twice);
- ``ignore-retry-after``: retries a 429 after 50 ms whatever the header says;
- ``ignore-cancel``: carries on to the end after a 409;
- ``drop-on-retry``: a retried event request sends only its first event (the rest is lost);
- ``no-refresh``: never refreshes its token.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import requests

DEFECTS = ("no-keys", "ignore-retry-after", "ignore-cancel", "drop-on-retry", "no-refresh")


class Refused(Exception):
    """A final answer: 4xx other than 409/429."""


class Cancelled(Exception):
    """409 run_finished."""


class Runner:
    def __init__(self, job: dict[str, Any], defect: str | None) -> None:
        self.base = job["callbackUrl"].rstrip("/")
        self.defect = defect
        self.session = requests.Session()
        self.prefix = str(uuid.uuid4())
        self._set_token(job["runnerToken"])

    def _set_token(self, token: str) -> None:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        now = time.time()
        self.token, self.refresh_at = token, now + (claims["exp"] - now) / 2

    def _refresh(self) -> None:
        if self.defect == "no-refresh" or time.time() < self.refresh_at:
            return
        answer = self.post("token", {}, refresh=False)
        self._set_token(answer["runnerToken"])

    def post(
        self,
        endpoint: str,
        body: dict[str, Any],
        *,
        refresh: bool = True,
        upload: Path | None = None,
    ) -> dict[str, Any]:
        for attempt in range(1, 12):
            if refresh:
                self._refresh()
            if attempt > 1 and self.defect == "drop-on-retry" and endpoint == "events":
                body = {"events": body["events"][:1]}
            headers = {"Authorization": f"Bearer {self.token}"}
            try:
                if upload is None:
                    r = self.session.post(
                        f"{self.base}/{endpoint}", json=body, headers=headers, timeout=10
                    )
                else:
                    with upload.open("rb") as file:
                        r = self.session.post(
                            f"{self.base}/{endpoint}",
                            data=body,
                            files={"file": (upload.name, file, "text/plain")},
                            headers=headers,
                            timeout=10,
                        )
            except requests.RequestException:
                time.sleep(0.05 * attempt)
                continue
            if r.status_code == 200:
                return r.json()
            if r.status_code == 409:
                raise Cancelled
            if r.status_code in (429, 503) or r.status_code >= 500:
                wait = 0.05 * attempt
                if r.headers.get("Retry-After") and self.defect != "ignore-retry-after":
                    wait = float(r.headers["Retry-After"])
                time.sleep(wait)
                continue
            raise Refused(f"{endpoint}: HTTP {r.status_code}")
        raise Refused(f"{endpoint}: giving up")

    def quietly(self, endpoint: str, body: dict[str, Any], **kwargs: Any) -> None:
        """Send something whose refusal (400) is not worth the run."""
        try:
            self.post(endpoint, body, **kwargs)
        except Refused as exc:
            sys.stderr.write(f"dropped: {exc}\n")

    def key(self, name: str) -> dict[str, str]:
        return {} if self.defect == "no-keys" else {"idempotencyKey": f"{self.prefix}:{name}"}

    def run(self, count: int, seconds: float) -> int:
        try:
            self.post("status", {"status": "running"})
        except Cancelled:
            return 0
        sent = 0
        while sent < count:
            batch = []
            for _ in range(3):
                if sent < count:
                    sent += 1
                    batch.append(
                        {"eventType": "log", "message": f"line {sent}", "metadata": {"seq": sent}}
                        | self.key(str(sent))
                    )
            try:
                self.quietly("events", {"events": batch})
                self.quietly("status", {"progress": round(sent / count, 3)})
            except Cancelled:
                if self.defect != "ignore-cancel":
                    return 0
            time.sleep(seconds / count)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "result.txt"
            path.write_text("the result\n")
            fields = {"artifactType": "report"} | self.key("artifact:1")
            try:
                self.post("artifacts", fields, upload=path)
                self.post(
                    "status", {"status": "completed", "eventCount": count, "artifactCount": 1}
                )
            except Cancelled:
                return 0
        return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--defect", choices=DEFECTS)
    parser.add_argument("--events", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--job-from", choices=("env", "stdin"), default="env")
    args = parser.parse_args()
    job = (
        json.load(sys.stdin)
        if args.job_from == "stdin"
        else json.loads(os.environ["DESIGNRUN_JOB"])
    )
    try:
        return Runner(job, args.defect).run(args.events, args.seconds)
    except Refused as exc:
        sys.stderr.write(f"runner failed: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
