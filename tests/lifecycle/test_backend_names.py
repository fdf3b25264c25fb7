"""Runner backend names (API.md Part 2 § Runner backends): ``jobs`` is the job request."""

from __future__ import annotations

import pytest

from designrun.config import ConfigError, load_config, runner_backend


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({}, "local"),
        ({"DAYTONA_API_URL": "http://jobs.internal"}, "jobs"),
        ({"RUNNER_BACKEND": "jobs", "DAYTONA_API_URL": "http://jobs.internal"}, "jobs"),
        ({"RUNNER_BACKEND": "local", "DAYTONA_API_URL": "http://jobs.internal"}, "local"),
        ({"RUNNER_BACKEND": "none"}, None),
    ],
)
def test_backend_chosen_from_the_environment(monkeypatch, tmp_path, environment, expected):
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert runner_backend(load_config(str(tmp_path))) == expected


def test_the_job_request_needs_its_url(monkeypatch, tmp_path):
    monkeypatch.setenv("RUNNER_BACKEND", "jobs")
    with pytest.raises(ConfigError, match="DAYTONA_API_URL"):
        load_config(str(tmp_path))


def test_an_unknown_backend_stops_the_service(monkeypatch, tmp_path):
    monkeypatch.setenv("RUNNER_BACKEND", "kubernetes")
    with pytest.raises(ConfigError, match="RUNNER_BACKEND"):
        load_config(str(tmp_path))
