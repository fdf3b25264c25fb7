"""The local runner's pieces that need no server: environment, callback address, layering."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from designrun.triggers import local
from designrun.triggers.jobs import TriggerError

PACKAGE = Path(__file__).resolve().parents[2] / "designrun"


def test_runner_environment_is_an_allow_list():
    environ = {
        "PATH": "/usr/bin",
        "HOME": "/home/svc",
        "LC_ALL": "C.UTF-8",
        "DESIGNRUN_DEMO_DELAY": "0.1",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_ACCESS_KEY_ID": "y",
        "DATABASE_URL": "postgresql://u:p@h/db",
        "RUNNER_AUTH_SECRET": "s" * 40,
        "SECRET_KEY": "k" * 40,
        "S3_BUCKET": "b",
        "SOME_DOTENV_VALUE": "from .env",
        "ANTHROPIC_API_KEY": "sk-agent",
    }
    env = local.runner_environment({"LOCAL_RUNNER_ENV": ["ANTHROPIC_API_KEY"]}, environ)
    assert env == {
        "PATH": "/usr/bin",
        "HOME": "/home/svc",
        "LC_ALL": "C.UTF-8",
        "DESIGNRUN_DEMO_DELAY": "0.1",
        "ANTHROPIC_API_KEY": "sk-agent",
    }


def test_callback_origin_is_the_configured_or_bound_address_never_a_request_origin():
    assert local.callback_origin({"LOCAL_RUNNER_BIND_ORIGIN": "http://127.0.0.1:8000"}) == (
        "http://127.0.0.1:8000"
    )
    configured = {"LOCAL_RUNNER_ORIGIN": "http://10.0.0.5:80/", "LOCAL_RUNNER_BIND_ORIGIN": "x"}
    assert local.callback_origin(configured) == "http://10.0.0.5:80"
    with pytest.raises(TriggerError, match="LOCAL_RUNNER_ORIGIN"):
        local.callback_origin({"EXPO_PUBLIC_WORKER_ORIGIN": "https://public.example.com"})


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_services_never_import_triggers_api_or_web():
    """The arrow points api → services → models; triggers → services (issue 7 item 7)."""
    for path in sorted((PACKAGE / "services").glob("*.py")):
        upward = {
            name
            for name in _imports(path)
            if name.startswith(("designrun.triggers", "designrun.api", "designrun.web"))
        }
        assert not upward, f"{path.name} imports {upward}"
