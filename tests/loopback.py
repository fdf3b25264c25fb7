"""Fixtures shared by test folders that run a pytest-httpserver (fake job service, Daytona,
webhook receiver): imported by their conftest.py.

``make_httpserver`` overrides the plugin's (which listens on "localhost") so the server is
always on 127.0.0.1, and no *_PROXY variable can send a test's request anywhere else.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytest_httpserver import HTTPServer


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests honours *_PROXY variables: keep every request on the loopback address.
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
