"""Fixtures for the operations tests: a loopback HTTP server (fake job service, webhook receiver).

As in tests/triggers: the server listens on 127.0.0.1 (not "localhost"), no proxy variable
can send a request elsewhere, and after each test it must have seen no handler error.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytest_httpserver import HTTPServer


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
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
def receiver(httpserver: HTTPServer) -> Iterator[HTTPServer]:
    """A loopback HTTP server (requests in ``receiver.log``); checked after the test."""
    yield httpserver
    httpserver.check_handler_errors()
