"""Fixtures for the runner client tests: a fake runner API (fakeserver.py) and clients.

Both are torn down after each test: the clients are closed first (a final flush against a
server that is still up), then the servers are stopped.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from designrun.runner import RunnerClient
from tests.runner.fakeserver import FakeRunnerApi

TOKEN = "legacy-shared-secret-for-the-fake-server"
FAST: dict[str, Any] = {
    "backoff_base": 0.001,
    "backoff_cap": 0.01,
    "flush_interval": 0.01,
    "timeout": 5.0,
}


@pytest.fixture
def fake_factory() -> Iterator[Callable[..., FakeRunnerApi]]:
    """``fake_factory(seed=…, chaos=Chaos(…), tokens={…}, start=True)``: a fake runner API."""
    servers: list[FakeRunnerApi] = []

    def build(
        *, tokens: set[str] | None = None, start: bool = True, **kwargs: Any
    ) -> FakeRunnerApi:
        fake = FakeRunnerApi(str(uuid.uuid4()), tokens or {TOKEN}, **kwargs)
        servers.append(fake)
        return fake.start() if start else fake

    yield build
    for fake in servers:
        fake.stop()


@pytest.fixture
def fake(fake_factory: Callable[..., FakeRunnerApi]) -> FakeRunnerApi:
    return fake_factory()


@pytest.fixture
def client_factory() -> Iterator[Callable[..., RunnerClient]]:
    """``client_factory(fake_or_url, token=TOKEN, **options)``; FAST backoff by default."""
    clients: list[RunnerClient] = []

    def build(target: FakeRunnerApi | str, token: str = TOKEN, **options: Any) -> RunnerClient:
        url = target.callback_url if isinstance(target, FakeRunnerApi) else target
        client = RunnerClient(url, token, **{**FAST, **options})
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close(timeout=5)
