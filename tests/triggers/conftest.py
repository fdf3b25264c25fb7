"""Fixtures for the trigger tests: a pytest-httpserver Daytona bound to 127.0.0.1.

``make_httpserver`` is overridden here (not the plugin's, which listens on "localhost") so the
fake Daytona is always on the loopback address, whatever other test folders configure.
After each test the server must have seen no unexpected request and no handler error.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytest_httpserver import HTTPServer

from tests.loopback import _no_proxy, make_httpserver  # noqa: F401  (fixtures)


@pytest.fixture
def daytona(httpserver: HTTPServer) -> Iterator[HTTPServer]:
    """The fake Daytona jobs API (requests in ``daytona.log``); checked after the test."""
    yield httpserver
    httpserver.check_handler_errors()
    httpserver.check_assertions()
