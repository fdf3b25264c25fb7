"""The sandbox backend's settings: start-up checks, the allow-list, the runner's command line."""

from __future__ import annotations

import pytest

from designrun.config import ConfigError, load_config
from designrun.triggers import sandboxes


def test_sandbox_backend_needs_an_api_key_and_a_snapshot(monkeypatch, tmp_path):
    monkeypatch.setenv("RUNNER_BACKEND", "daytona")
    with pytest.raises(ConfigError, match="DAYTONA_API_KEY"):
        load_config(str(tmp_path))
    monkeypatch.setenv("DAYTONA_API_KEY", "dtn_key")
    with pytest.raises(ConfigError, match="DAYTONA_SNAPSHOT"):
        load_config(str(tmp_path))
    monkeypatch.setenv("DAYTONA_SNAPSHOT", "designrun-runner")
    config = load_config(str(tmp_path))
    assert config["RUNNER_BACKEND"] == "daytona"
    assert config["DAYTONA_API_URL"] is None  # the SDK's own default then
    assert (config["DAYTONA_AUTO_STOP_MINUTES"], config["DAYTONA_AUTO_DELETE_MINUTES"]) == (15, 60)
    assert config["DAYTONA_KEEP_SECONDS"] == 0


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (None, ("designrun.example.org", None)),
        (
            "api.anthropic.com, 10.0.0.0/8",
            ("designrun.example.org,api.anthropic.com", "10.0.0.0/8"),
        ),
        ("*", (None, None)),
    ],
)
def test_allow_list_lets_the_sandbox_reach_the_callback_origin(extra, expected):
    config = {"DAYTONA_NETWORK_ALLOW": extra}
    callback = "https://Designrun.example.org/api/runner/runs/x"
    assert sandboxes.allow_lists(config, callback) == expected


def test_an_ip_callback_origin_becomes_a_cidr():
    assert sandboxes.allow_lists({}, "http://203.0.113.7:8000/x") == (None, "203.0.113.7/32")


def test_runner_command_line_carries_the_job_file_not_the_job():
    argv = sandboxes.runner_argv({"DAYTONA_AGENT_COMMAND": "my-agent --fast"}, "/w/job.json")
    assert argv == [
        "designrun-runner",
        "--job",
        "/w/job.json",
        "--heartbeat",
        "10",
        "--",
        "my-agent",
        "--fast",
    ]
    assert sandboxes.runner_argv({}, "/w/job.json")[-1] == "10"  # the runner's default agent


def test_installations_get_different_labels():
    one = sandboxes.instance_label({"RUNNER_AUTH_SECRET": "a" * 40})
    two = sandboxes.instance_label({"RUNNER_AUTH_SECRET": "b" * 40})
    assert one != two and len(one) == 16 and "a" * 8 not in one
