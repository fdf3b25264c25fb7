"""Fixtures for the trigger tests: a pytest-httpserver Daytona bound to 127.0.0.1.

``make_httpserver`` is overridden here (not the plugin's, which listens on "localhost") so the
fake Daytona is always on the loopback address, whatever other test folders configure.
After each test the server must have seen no unexpected request and no handler error.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytest_httpserver import HTTPServer


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests honours *_PROXY variables: keep every job request on the loopback address.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")


@pytest.fixture(scope="session")
def make_httpserver() -> Iterator[HTTPServer]:
    server = HTTPServer(host="127.0.0.1", port=0)
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


@pytest.fixture
def daytona(httpserver: HTTPServer) -> Iterator[HTTPServer]:
    """The fake Daytona jobs API (requests in ``daytona.log``); checked after the test."""
    yield httpserver
    httpserver.check_handler_errors()
    httpserver.check_assertions()
