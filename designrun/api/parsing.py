"""Request parsing at the edge: content types, JSON, pydantic models, clear 400s.

Every body goes through here, so a bad one is rejected before any service sees it (and a
failed request changes nothing).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from designrun.api.limits import read_json_body
from designrun.errors import InvalidRequestError, UnsupportedMediaTypeError
from designrun.text import string_problem

M = TypeVar("M", bound=BaseModel)


class _NonFiniteError(ValueError):
    """A number JSON cannot carry: NaN, Infinity, or a literal that overflows (``1e400``)."""


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NonFiniteError(text)
    return value


def _reject_constant(name: str) -> Any:
    raise _NonFiniteError(name)


def _non_finite_path(value: Any, path: str) -> str | None:
    """The path of the first NaN or infinity in ``value`` (same notation as pydantic's)."""
    if isinstance(value, float):
        return None if math.isfinite(value) else path
    if isinstance(value, dict):
        for key, item in value.items():
            found = _non_finite_path(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _non_finite_path(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def decode_json(raw: bytes | str, where: str = "") -> Any:
    """Parse JSON text; 400 when malformed or when a number is not finite.

    Python's json turns ``1e400`` (or 400 digits) into ``inf``, which JSON cannot carry back
    out: it is refused wherever JSON enters, like NaN and Infinity (API.md § Conventions).
    ``where`` prefixes the offending field's path in the message (``metadata`` for a form field).
    """
    try:
        return json.loads(raw, parse_float=_finite_float, parse_constant=_reject_constant)
    except _NonFiniteError as exc:
        # Rare: parse again, leniently, only to name the field.
        try:
            path = _non_finite_path(json.loads(raw), where)
        except RecursionError:
            path = None
        raise InvalidRequestError(
            f"{path or where or 'body'}: must be a finite number (got {exc})"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise InvalidRequestError(f"{where or 'body'}: malformed JSON ({exc})") from None


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
    data = decode_json(raw)
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
