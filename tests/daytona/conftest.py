"""Fixtures for the Daytona sandbox backend: the fake Daytona API and a live designrun.

``fake``: tests/fake_daytona.py on a free port of 127.0.0.1, closed (its commands killed) after
the test. ``sandbox_app``: an app whose runs go to the ``daytona`` sandbox backend of that fake,
served over real HTTP (a werkzeug thread) so that the runner the fake starts can report to it.
Nothing runs by itself: tests call ``dispatcher.run_once`` and ``sandboxes.watch_once``.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from tests.fake_daytona import API_KEY, FakeDaytona
from tests.servers import free_port

# A quick agent for the runner to start: one line of output, then success.
QUICK_AGENT = f"{sys.executable} -c \"print('hello from the sandbox')\""


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    for name in ("DAYTONA_USE_DEPRECATED_POLLING", "DAYTONA_JWT_TOKEN", "DAYTONA_SERVER_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake() -> Iterator[FakeDaytona]:
    server = FakeDaytona(log_lag_lines=2, log_lag_seconds=0.5).start()
    yield server
    server.close()


@pytest.fixture
def sandbox_app(app_factory: Any, fake: FakeDaytona) -> Iterator[Any]:
    """``build(**overrides)`` → a live app on the sandbox backend (``app.live_url`` set)."""
    servers: list[Any] = []

    def build(**overrides: Any) -> Flask:
        port = free_port()
        config: dict[str, Any] = {
            "RUNNER_BACKEND": "daytona",
            "DAYTONA_API_URL": fake.url,
            "DAYTONA_API_KEY": API_KEY,
            "DAYTONA_SNAPSHOT": "designrun-runner-test",
            "DAYTONA_AGENT_COMMAND": QUICK_AGENT,
            "DAYTONA_WATCH_INTERVAL": 0,
            "DAYTONA_CREATE_TIMEOUT": 30,
            "EXPO_PUBLIC_WORKER_ORIGIN": f"http://127.0.0.1:{port}",
            "TRIGGER_BACKOFF_BASE": 0.01,
        }
        config.update(overrides)
        app = app_factory(**config)
        server = make_server("127.0.0.1", port, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        app.live_url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
        return app

    yield build
    for server in servers:
        server.shutdown()
        server.server_close()
