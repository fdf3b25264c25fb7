"""The project documents its own contract: docs/api.md covers every OpenAPI operation, every
operation has a summary and a description, every parameter a description, and the README and
docs link only to files inside the repository (issue 7 item 6)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from designrun.api.openapi import document

REPO = Path(__file__).resolve().parent.parent
METHODS = {"get", "post", "put", "patch", "delete", "head"}


def operations() -> list[tuple[str, str, dict]]:
    return [
        (method.upper(), path, operation)
        for path, item in document()["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def colon_params(path: str) -> str:
    """``/runs/{runId}`` → ``/runs/:runId``, the way docs/api.md writes paths."""
    return re.sub(r"{(\w+)}", r":\1", path)


def test_every_openapi_route_is_documented_in_docs_api_md():
    text = (REPO / "docs" / "api.md").read_text()
    missing = [
        f"{method} {path}"
        for method, path, _ in operations()
        if f"`{method} {colon_params(path)}`" not in text
    ]
    assert not missing, f"docs/api.md lacks a section for: {missing}"


def test_every_operation_has_a_summary_and_description_and_every_parameter_a_description():
    for method, path, operation in operations():
        assert operation.get("summary"), f"{method} {path}: no summary"
        assert operation.get("description"), f"{method} {path}: no description"
        for parameter in operation.get("parameters", []):
            assert parameter.get("description"), f"{method} {path}: {parameter['name']}"


DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_docs_link_only_inside_the_repository(page):
    text = page.read_text()
    # The steering folder beside a checkout is not part of a clone (spelt in two pieces so that
    # this file does not itself name the path it forbids).
    assert "/".join(["..", "shared"]) not in text
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"https?://", target):
            continue
        path = (page.parent / target.split("#", 1)[0]).resolve()
        assert path.is_relative_to(REPO) and path.exists(), f"{page.name}: {target}"
