"""Fixtures for the operations tests: a loopback HTTP server (fake job service, webhook receiver).

As in tests/triggers (tests/loopback.py): the server listens on 127.0.0.1, no proxy variable
can send a request elsewhere, and after each test it must have seen no handler error.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytest_httpserver import HTTPServer

from tests.loopback import _no_proxy, make_httpserver  # noqa: F401  (fixtures)


@pytest.fixture
def receiver(httpserver: HTTPServer) -> Iterator[HTTPServer]:
    """A loopback HTTP server (requests in ``receiver.log``); checked after the test."""
    yield httpserver
    httpserver.check_handler_errors()
