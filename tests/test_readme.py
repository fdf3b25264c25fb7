"""The README's quick start, run as written against a live server (issue 6 items 17 and 19).

The walkthrough (the shell block that starts with ``B=``) is extracted from README.md and run by
bash, twice, against gunicorn with the built-in local runner: it must succeed both times (the
second run signs in instead of signing up) and fetch a real PNG. A step that fails must stop
the walkthrough with curl's error, never save a JSON error as ``preview.png``.

``make help`` prints the real port and lists every target of the Makefile.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.servers import REPO, GunicornServer

README = REPO / "README.md"
MAKEFILE = REPO / "Makefile"


def quick_start() -> list[str]:
    """The README's quick-start blocks: the two commands and the walkthrough."""
    text = README.read_text()
    section = text[text.index("## Quick start") :]
    section = section[: section.index("\n## ", 3)]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)


def walkthrough() -> str:
    blocks = [block for block in quick_start() if block.startswith("B=")]
    assert len(blocks) == 1, blocks
    return blocks[0]


def test_the_quick_start_is_two_commands_and_the_walkthrough():
    blocks = quick_start()
    assert len(blocks) == 2, blocks
    commands = [line.split("#")[0].strip() for line in blocks[0].splitlines() if line.strip()]
    assert commands == ["make run", "make test"]
    assert blocks[1] == walkthrough()
    assert "curl -s " not in walkthrough()  # every curl fails loudly (-f)


def _run_walkthrough(url: str, folder: Path) -> subprocess.CompletedProcess[str]:
    assert shutil.which("curl"), "curl is needed (make test installs it)"
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", walkthrough()],
        cwd=folder,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "B": url, "HOME": str(folder)},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.fixture
def server(app: Any, database_url: str, tmp_path: Path):
    """gunicorn with the README's defaults (local runner, demo agent) on the test database."""
    env = {
        "DATABASE_URL": database_url,
        "DESIGNRUN_INSTANCE_PATH": str(tmp_path / "instance"),
        "RUNNER_AUTH_SECRET": secrets.token_urlsafe(32),
        "WEB_CONCURRENCY": "2",
    }
    with GunicornServer(env, tmp_path) as running:
        yield running


@pytest.mark.slow
def test_the_walkthrough_runs_as_written_and_again(server, tmp_path):
    for attempt in (1, 2):
        folder = tmp_path / f"try{attempt}"
        folder.mkdir()
        done = _run_walkthrough(server.url, folder)
        assert done.returncode == 0, (attempt, done.stdout[-2000:], done.stderr[-2000:])
        assert '"status":"completed"' in done.stdout.replace(" ", ""), done.stdout[-2000:]
        assert (folder / "preview.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.slow
def test_a_failing_step_stops_the_walkthrough_loudly(server, tmp_path):
    """A user who exists with another password: sign-in is 401, sign-up 422; nothing more."""
    import requests

    r = requests.post(
        f"{server.url}/api/auth/sign-up/email",
        json={"email": "me@example.com", "password": "another-password"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    done = _run_walkthrough(server.url, tmp_path)
    assert done.returncode != 0
    assert "422" in done.stderr, done.stderr
    assert not (tmp_path / "preview.png").exists()


# --- make help (item 19) ------------------------------------------------------------------------


def makefile_targets() -> set[str]:
    return {
        match.group(1)
        for match in re.finditer(r"^([a-z][a-z0-9_-]*):(?!=)", MAKEFILE.read_text(), re.MULTILINE)
    }


@pytest.mark.parametrize("port", [None, "9123"])
def test_make_help_lists_every_target_with_the_real_port(port):
    assert shutil.which("make")
    command = ["make", "--no-print-directory", "-s", "help"] + ([f"PORT={port}"] if port else [])
    env = {k: v for k, v in os.environ.items() if k not in {"PORT", "MAKEFLAGS"}}
    done = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert "$(" not in done.stdout, done.stdout
    assert f"http://127.0.0.1:{port or 8000}" in done.stdout, done.stdout
    listed = {line.split()[0] for line in done.stdout.splitlines() if line.startswith("  ")}
    assert makefile_targets() - listed == set(), done.stdout
