"""One start-up log line says what is in use (issue 6 item 21).

Database (never its credentials), storage, runner backend and where runners call back, so a
self-hoster sees at a glance what the server runs with. gunicorn's master logs it once.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from designrun import create_app
from designrun.startup import summary
from tests.servers import GunicornServer


def test_summary_names_database_storage_runner_and_callback(tmp_path):
    app = create_app(
        {
            "INSTANCE_PATH": str(tmp_path),
            "SQLALCHEMY_DATABASE_URI": "postgresql://dbuser:s3cr3t-pw@db.internal:5432/runs"
            "?sslmode=require&password=also-secret",
            "RUNNER_BACKEND": "local",
            "LOCAL_RUNNER_ORIGIN": "http://127.0.0.1:8000",
        }
    )
    line = summary(app.config)
    assert "\n" not in line
    assert "postgresql" in line and "db.internal:5432/runs" in line
    assert "s3cr3t-pw" not in line and "also-secret" not in line and "dbuser" not in line
    assert f"storage local {tmp_path / 'artifacts'}" in line
    assert "runner local" in line and "callback http://127.0.0.1:8000" in line


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"RUNNER_BACKEND": "none"}, "runner none"),
        (
            {
                "RUNNER_BACKEND": None,
                "DAYTONA_API_URL": "https://jobs.example",
                "EXPO_PUBLIC_WORKER_ORIGIN": "https://designrun.example",
            },
            "callback https://designrun.example",
        ),
        (
            {"STORAGE_BACKEND": "s3", "S3_BUCKET": "art", "S3_ENDPOINT_URL": "http://minio:9000"},
            "storage s3 bucket art at http://minio:9000",
        ),
    ],
)
def test_summary_variants(tmp_path, overrides, expected):
    app = create_app({"INSTANCE_PATH": str(tmp_path), **overrides})
    assert expected in summary(app.config)


@pytest.mark.slow
def test_gunicorn_logs_the_summary_once(tmp_path: Path, database_url: str):
    env = {
        "DESIGNRUN_INSTANCE_PATH": str(tmp_path / "instance"),
        "RUNNER_AUTH_SECRET": secrets.token_urlsafe(32),
        "DATABASE_URL": database_url,
        "RUNNER_BACKEND": "none",
        "WEB_CONCURRENCY": "2",
    }
    with GunicornServer(env, tmp_path) as server:
        stderr = server.stderr()
    lines = [line for line in stderr.splitlines() if "designrun: serving with" in line]
    assert len(lines) == 1, stderr
    assert "runner none" in lines[0] and "storage local" in lines[0]
