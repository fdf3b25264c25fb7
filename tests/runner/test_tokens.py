"""Token handling: from the job request, refreshed before it expires, never logged."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import jwt
import pytest

from designrun.runner import RunnerClient, RunnerError
from tests.runner.fakeserver import FakeRunnerApi

ClientFactory = Callable[..., RunnerClient]
FakeFactory = Callable[..., FakeRunnerApi]
SECRET = "a-test-signing-secret-of-more-than-32-chars"


def mint(run_id: str, ttl: int) -> str:
    now = int(time.time())
    claims = {"sub": run_id, "scope": "runner", "iat": now, "exp": now + ttl}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def test_a_token_close_to_expiry_is_refreshed_and_the_new_one_is_used(
    fake_factory: FakeFactory, client_factory: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    fake = fake_factory(start=False)
    old = mint(fake.run_id, ttl=60)  # within the default 300 s margin
    fake.tokens = {old}
    new_tokens: list[str] = []

    def mint_new() -> str:
        token = mint(fake.run_id, ttl=3600)
        new_tokens.append(token)
        return token

    fake.mint = mint_new
    fake.start()
    client = client_factory(fake, token=old, flush_interval=60)
    with caplog.at_level(logging.DEBUG):
        client.set_status("running")
        client.event("log", "x")
        client.flush()
        client.set_progress(0.5)

    assert len(new_tokens) == 1
    assert [(s.endpoint, s.token) for s in fake.seen] == [
        ("token", old),
        ("status", new_tokens[0]),
        ("events", new_tokens[0]),
        ("status", new_tokens[0]),
    ]
    assert old not in caplog.text and new_tokens[0] not in caplog.text
    assert "refreshed" in caplog.text


def test_a_token_far_from_expiry_is_not_refreshed(
    fake_factory: FakeFactory, client_factory: ClientFactory
) -> None:
    fake = fake_factory(start=False)
    token = mint(fake.run_id, ttl=3600)
    fake.tokens = {token}
    fake.start()
    client = client_factory(fake, token=token)
    client.set_status("running")
    assert [s.endpoint for s in fake.seen] == ["status"]


def test_a_legacy_secret_is_never_refreshed(
    fake: FakeRunnerApi, client_factory: ClientFactory
) -> None:
    client = client_factory(fake, refresh_margin=10**9)
    client.set_status("running")
    client.set_progress(0.3)
    assert [s.endpoint for s in fake.seen] == ["status", "status"]


def test_a_failed_refresh_keeps_the_still_valid_token(
    fake_factory: FakeFactory, client_factory: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    fake = fake_factory(start=False)
    old = mint(fake.run_id, ttl=60)
    fake.tokens = {old}
    fake.start()
    fake.forced["token"] = [(503, {"ok": False, "code": "database_unavailable"}, {})] * 2
    client = client_factory(fake, token=old, max_attempts=2)
    with caplog.at_level(logging.WARNING, logger="designrun.runner"):
        client.set_status("running")
        client.set_progress(0.5)  # no second refresh attempt right away
    assert [(s.endpoint, s.token) for s in fake.seen] == [
        ("token", old),
        ("token", old),
        ("status", old),
        ("status", old),
    ]
    assert "token refresh failed" in caplog.text


def test_refresh_token_on_demand(fake: FakeRunnerApi, client_factory: ClientFactory) -> None:
    fake.mint = lambda: "fresh-token"
    client = client_factory(fake)
    assert client.refresh_token() == "fresh-token"
    client.set_status("running")
    assert fake.seen[-1].token == "fresh-token"


def test_a_refresh_refused_with_401_is_an_error(
    fake_factory: FakeFactory, client_factory: ClientFactory
) -> None:
    fake = fake_factory(tokens={"other"})
    client = client_factory(fake, token=mint(fake.run_id, ttl=10))
    with pytest.raises(RunnerError) as info:
        client.set_status("running")
    assert info.value.status == 401
    assert [s.endpoint for s in fake.seen] == ["token"]


def test_from_job_reads_the_api_md_job_request() -> None:
    run_id = "0192f7a0-0000-7000-8000-000000000001"
    url = f"http://127.0.0.1:9/api/runner/runs/{run_id}"
    job = {"runId": run_id, "callbackUrl": url, "runnerToken": "t1", "runnerSecret": "t0"}
    with RunnerClient.from_job(job) as client:
        assert client.run_id == run_id
        assert client._token == "t1"
        assert not client.cancelled and client.run_status is None
    old_job = {"callbackUrl": url + "/", "runnerSecret": "t0"}
    with RunnerClient.from_job(old_job) as client:
        assert client.run_id == run_id and client._token == "t0"

    for bad in (
        {"runnerToken": "t"},
        {"callbackUrl": url},
        {"callbackUrl": "http://127.0.0.1:9/elsewhere", "runnerToken": "t"},
        {"callbackUrl": url, "runnerToken": "t", "runId": "another"},
    ):
        with pytest.raises(ValueError):
            RunnerClient.from_job(bad)
