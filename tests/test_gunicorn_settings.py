"""gunicorn.conf.py's settings read from the environment (no server started)."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

CONF = Path(__file__).resolve().parent.parent / "gunicorn.conf.py"


def _settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> dict:
    monkeypatch.chdir(tmp_path)  # no .env of the checkout is loaded
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(CONF))


def test_workers_are_replaced_rarely_by_default(monkeypatch, tmp_path):
    # 10,000 requests came every half minute per worker at ingestion rates (issue 13).
    settings = _settings(monkeypatch, tmp_path)
    assert settings["max_requests"] == 200_000
    assert settings["max_requests_jitter"] == 20_000


@pytest.mark.parametrize(("value", "expected"), [("5000", 5000), ("0", 0)])
def test_gunicorn_max_requests_sets_it(monkeypatch, tmp_path, value, expected):
    settings = _settings(monkeypatch, tmp_path, GUNICORN_MAX_REQUESTS=value)
    assert settings["max_requests"] == expected
    assert settings["max_requests_jitter"] == expected // 10
