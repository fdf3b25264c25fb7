"""API.md § Environment: settings, generated secrets, start-up refusal, DATABASE_URL forms."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from designrun import create_app
from designrun.config import ConfigError, normalise_database_url, persistent_secret


def test_unset_secrets_are_generated_once_owner_only_and_reused(tmp_path):
    app1 = create_app({"INSTANCE_PATH": str(tmp_path)})
    app2 = create_app({"INSTANCE_PATH": str(tmp_path)})
    for name, key in (("runner_auth_secret", "RUNNER_AUTH_SECRET"), ("secret_key", "SECRET_KEY")):
        path = tmp_path / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert app1.config[key] == app2.config[key] == path.read_text().strip()
        assert len(app1.config[key]) >= 32
    assert app1.config["RUNNER_AUTH_SECRET"] != app1.config["SECRET_KEY"]


def test_concurrent_first_start_agrees_on_one_secret(tmp_path):
    results: list[str] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        results.append(persistent_secret(tmp_path, "runner_auth_secret"))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["runner_auth_secret"]


@pytest.mark.parametrize("name", ["RUNNER_AUTH_SECRET", "SECRET_KEY"])
def test_short_secret_stops_start_up_with_one_line_naming_it(monkeypatch, tmp_path, name):
    monkeypatch.setenv(name, "too-short")
    with pytest.raises(ConfigError) as info:
        create_app({"INSTANCE_PATH": str(tmp_path)})
    message = str(info.value)
    assert name in message and "32" in message and "\n" not in message


def test_env_settings_are_read(monkeypatch, tmp_path):
    monkeypatch.setenv("RUNNER_AUTH_SECRET", "r" * 32)
    monkeypatch.setenv("SECRET_KEY", "s" * 40)
    monkeypatch.setenv("RUNNER_TOKEN_TTL", "60")
    monkeypatch.setenv("ALLOW_SIGNUP", "false")
    monkeypatch.setenv("TRUSTED_ORIGINS", "https://a.example, https://b.example/")
    monkeypatch.setenv("MAX_UPLOAD_BYTES", "1000")
    monkeypatch.setenv("SESSION_TTL", "3600")
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db.internal/designrun")
    app = create_app({"INSTANCE_PATH": str(tmp_path)})
    c = app.config
    assert c["RUNNER_AUTH_SECRET"] == "r" * 32 and c["SECRET_KEY"] == "s" * 40
    assert c["RUNNER_TOKEN_TTL"] == 60 and c["ALLOW_SIGNUP"] is False
    assert c["TRUSTED_ORIGINS"] == ["https://a.example", "https://b.example"]
    assert c["MAX_UPLOAD_BYTES"] == c["MAX_CONTENT_LENGTH"] == 1000
    assert c["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u:p@db.internal/designrun"
    assert not (tmp_path / "runner_auth_secret").exists()


def test_defaults(tmp_path):
    app = create_app({"INSTANCE_PATH": str(tmp_path)})
    c = app.config
    assert c["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path}/designrun.db"
    assert c["STORAGE_BACKEND"] == "local"
    assert c["STORAGE_LOCAL_DIR"] == os.path.join(str(tmp_path), "artifacts")
    assert c["RUNNER_TOKEN_TTL"] == 86400 and c["SESSION_TTL"] == 604800
    assert c["MAX_UPLOAD_BYTES"] == 1073741824 and c["ALLOW_SIGNUP"] is True
    assert c["TRIGGER_MAX_ATTEMPTS"] == 5


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///x.db", "sqlite:///x.db"),
        ("postgresql://h/db", "postgresql+psycopg://h/db"),
        ("postgres://h/db", "postgresql+psycopg://h/db"),
        ("postgresql+psycopg://h/db", "postgresql+psycopg://h/db"),
    ],
)
def test_database_url_forms(url, expected):
    assert normalise_database_url(url) == expected


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATABASE_URL", "mysql://h/db"),
        ("STORAGE_BACKEND", "ftp"),
        ("ALLOW_SIGNUP", "maybe"),
        ("RUNNER_TOKEN_TTL", "soon"),
        ("MAX_UPLOAD_BYTES", "0"),
    ],
)
def test_bad_settings_are_one_line_errors(monkeypatch, tmp_path, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        create_app({"INSTANCE_PATH": str(tmp_path)})
    assert name in str(info.value)


def test_s3_backend_needs_a_bucket(monkeypatch, tmp_path):
    monkeypatch.setenv("STORAGE_BACKEND", "s3")
    with pytest.raises(ConfigError, match="S3_BUCKET"):
        create_app({"INSTANCE_PATH": str(tmp_path)})


def test_create_app_opens_no_connection(tmp_path):
    # an unreachable database does not stop the app from being built
    app = create_app(
        {"INSTANCE_PATH": str(tmp_path), "SQLALCHEMY_DATABASE_URI": "postgresql://u@127.0.0.1:1/x"}
    )
    assert app.name == "designrun"


# --- start-up checks (issue 6 item 16) ----------------------------------------------------------


def test_a_new_instance_folder_is_created_even_with_both_secrets_set(monkeypatch, tmp_path):
    monkeypatch.setenv("RUNNER_AUTH_SECRET", "r" * 32)
    monkeypatch.setenv("SECRET_KEY", "s" * 32)
    instance = tmp_path / "new" / "instance"
    app = create_app({"INSTANCE_PATH": str(instance)})
    assert instance.is_dir()
    with app.app_context():
        from flask_migrate import upgrade

        upgrade()  # the SQLite database lives in the new folder
        from designrun.extensions import db

        db.engine.dispose()
    assert (instance / "designrun.db").exists()


def test_an_instance_folder_that_cannot_be_created_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError) as info:
        create_app({"INSTANCE_PATH": str(blocker / "instance")})
    message = str(info.value)
    assert "\n" not in message
    assert str(blocker / "instance") in message and "DESIGNRUN_INSTANCE_PATH" in message


@pytest.mark.parametrize("content", ["", "\n", "short"])
@pytest.mark.parametrize(
    ("file", "variable"),
    [("secret_key", "SECRET_KEY"), ("runner_auth_secret", "RUNNER_AUTH_SECRET")],
)
def test_an_empty_or_short_secret_file_is_named_as_such(tmp_path, file, variable, content):
    (tmp_path / file).write_text(content)
    with pytest.raises(ConfigError) as info:
        create_app({"INSTANCE_PATH": str(tmp_path)})
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / file) in message and variable in message
    assert "is set but" not in message
