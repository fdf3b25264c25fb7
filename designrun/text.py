"""Which strings the API can store: one rule for the server's validation and the runner client.

PostgreSQL cannot store NUL characters or lone UTF-16 surrogates (which JSON's ``\\u`` escapes
can produce), and the service must behave the same on SQLite. Pure: imports nothing, so the
runner client (designrun.runner) uses it too.
"""

from __future__ import annotations

from typing import Any


def string_problem(value: Any, path: str = "") -> str | None:
    """The first "<path>: <problem>" for a NUL or lone surrogate anywhere in ``value``, or None."""
    if isinstance(value, str):
        if "\x00" in value:
            return f"{path or 'body'}: must not contain NUL characters"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{path or 'body'}: invalid Unicode (lone surrogate)"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            problem = string_problem(key, path) or string_problem(
                item, f"{path}.{key}" if path else str(key)
            )
            if problem:
                return problem
    elif isinstance(value, list):
        for index, item in enumerate(value):
            problem = string_problem(item, f"{path}[{index}]")
            if problem:
                return problem
    return None
