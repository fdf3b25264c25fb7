"""Request parsing at the edge: content types, JSON, pydantic models, clear 400s.

Every body goes through here, so a bad one is rejected before any service sees it (and a
failed request changes nothing).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from designrun.api.limits import read_json_body
from designrun.errors import InvalidRequestError, UnsupportedMediaTypeError
from designrun.text import string_problem

M = TypeVar("M", bound=BaseModel)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def check_strings(value: Any, path: str) -> None:
    """400 for a NUL character or lone surrogate anywhere (designrun/text.py says why)."""
    problem = string_problem(value, path)
    if problem is not None:
        raise InvalidRequestError(problem)


def is_json_request() -> bool:
    mimetype = request.mimetype or ""
    return mimetype == "application/json" or mimetype.endswith("+json")


def json_object() -> dict[str, Any]:
    """The request body as a JSON object: 415 without a JSON content type, 400 if malformed."""
    if not is_json_request():
        raise UnsupportedMediaTypeError("expected a JSON body (Content-Type: application/json)")
    raw = read_json_body()  # bounded per endpoint (api/limits.py)
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequestError(f"body: malformed JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InvalidRequestError("body: must be a JSON object")
    # In valid JSON, NUL and lone surrogates can only arrive as \u escapes: walk only then.
    if b"\\u" in raw:
        check_strings(data, "")
    return data


def _describe(error: ValidationError) -> str:
    parts = []
    for detail in error.errors()[:3]:
        loc = ""
        for item in detail["loc"]:
            loc += f"[{item}]" if isinstance(item, int) else (f".{item}" if loc else str(item))
        message = detail["msg"].removeprefix("Value error, ")
        parts.append(f"{loc or 'body'}: {message}")
    return "; ".join(parts)


def validate(model: type[M], data: Mapping[str, Any]) -> M:
    """Validate ``data`` into ``model``; a 400 naming the offending field(s) otherwise."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequestError(_describe(exc)) from None


def parse_body(model: type[M]) -> M:
    """The JSON body validated into ``model``."""
    return validate(model, json_object())


def parse_query(model: type[M]) -> M:
    """The query string validated into ``model`` (first value of each parameter)."""
    return validate(model, request.args.to_dict(flat=True))
