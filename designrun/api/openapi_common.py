"""The building blocks shared by the OpenAPI operation tables (api/openapi_*.py).

A $ref to a model of api/schemas.py or api/webhook_schemas.py, JSON content, the responses of
an operation (its success and the error statuses with their ErrorOut body), query parameters
read off a pydantic model, the run id path parameter and the security requirements. No
operation is written down here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from designrun.api import schemas as s

REF = "#/components/schemas/{model}"
_ERROR_TEXT = {
    400: "Invalid request (the message names the field)",
    401: "Missing or invalid credentials",
    403: "Forbidden",
    404: "Not found",
    409: "The run is finished (run_finished, runStatus says how) or still active (run_active)",
    413: "Body larger than its bound (MAX_JSON_BYTES or tighter for JSON, MAX_UPLOAD_BYTES)",
    415: "Body is not JSON",
    416: "Range not satisfiable (Content-Range: bytes */size)",
    422: "E-mail already registered",
    429: "Too many failed sign-ins (Retry-After)",
    503: "Database unavailable",
}
_COMMON = (400, 413, 415, 503)


def ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def responses(ok_status: int, ok_schema: dict[str, Any], errors: tuple[int, ...]) -> dict:
    responses: dict[str, Any] = {
        str(ok_status): {"description": "Success", **json_content(ok_schema)}
    }
    for status in sorted(set(errors) | set(_COMMON)):
        responses[str(status)] = {
            "description": _ERROR_TEXT[status],
            **json_content(ref(s.ErrorOut)),
        }
    return responses


_QUERY_TEXT = {
    "limit": (
        "Page size (runs: 1..100, default 20; events: 1..1000, default 100; webhook "
        "deliveries: 1..100, default 50)"
    ),
    "cursor": "nextCursor of the previous page (opaque)",
    "status": "Only runs in this status",
    "after": "Only events with a sequence above this one (the previous page's nextCursor)",
}


def query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    return [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": _QUERY_TEXT[name],
            "schema": prop,
        }
        for name, prop in schema["properties"].items()
    ]


RUN_ID = {
    "name": "runId",
    "in": "path",
    "required": True,
    "description": "The run's id (a UUID; any other text is a 404)",
    "schema": {"type": "string", "format": "uuid"},
}

RUNNER: list[dict[str, list[str]]] = [{"runnerBearer": []}]
USER: list[dict[str, list[str]]] = [{"sessionBearer": []}, {"sessionCookie": []}]
