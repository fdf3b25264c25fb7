"""The OpenAPI operations of the artifact endpoints beyond list and register.

Direct uploads (the upload URL, and the local backend's PUT) and ranged/conditional downloads
(GET and HEAD of an artifact's content): API.md § Artifacts at any size.
"""

from __future__ import annotations

from typing import Any

from designrun.api import schemas as s
from designrun.api.openapi_common import (
    RUN_ID,
    RUNNER,
    USER,
    json_content,
    ref,
    responses,
)

_ARTIFACT_ID = {
    "name": "artifactId",
    "in": "path",
    "required": True,
    "description": "The artifact's id (a UUID)",
    "schema": {"type": "string", "format": "uuid"},
}


def _binary(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
    }


def artifact_operations() -> dict[str, dict[str, Any]]:
    """API.md § Artifacts at any size: direct uploads and ranged/conditional downloads."""
    errors = responses(200, {}, (401, 403, 404, 413, 416))
    download_responses = {
        "200": _binary("The whole object (attachment, nosniff)"),
        "206": _binary("One byte range (Content-Range)"),
        "302": {"description": "s3 storage: a short-lived presigned GET (Location)"},
        "304": {"description": "Not modified (If-None-Match / If-Modified-Since)"},
        **{k: v for k, v in errors.items() if k in {"401", "404", "416", "503"}},
    }
    download = {
        "tags": ["design"],
        "security": USER,
        "parameters": [RUN_ID, _ARTIFACT_ID],
        "responses": download_responses,
    }
    return {
        "/api/runner/runs/{runId}/artifacts/uploads": {
            "post": {
                "operationId": "createUpload",
                "tags": ["runner"],
                "summary": "Get a URL to upload one file to directly",
                "description": (
                    "Answers a URL, method (PUT) and headers to send one file's bytes with "
                    "(no bearer: the URL is the credential, for that key only, until expiresAt). "
                    "s3: a presigned PUT to the bucket; local: a signed URL on this service. "
                    "Then register the artifact with the JSON form of the artifacts endpoint."
                ),
                "security": RUNNER,
                "parameters": [RUN_ID],
                "requestBody": {"required": True, **json_content(ref(s.DirectUploadRequest))},
                "responses": responses(200, ref(s.DirectUploadOut), (401, 404)),
            }
        },
        "/api/uploads/{token}": {
            "put": {
                "operationId": "putUpload",
                "tags": ["runner"],
                "summary": "Upload one file's bytes (local storage)",
                "description": (
                    "The upload URL of the local backend: the body is streamed to disk "
                    "(temporary file, fsync, rename). 403 for an expired, tampered or foreign "
                    "URL or another Content-Type; 413 past its size limit, nothing stored."
                ),
                "security": [],
                "parameters": [
                    {
                        "name": "token",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": "The signed upload token from the upload URL",
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
                },
                "responses": responses(200, ref(s.UploadReceivedOut), (403, 404, 413)),
            }
        },
        "/api/design/runs/{runId}/artifacts/{artifactId}/content": {
            "get": {
                "operationId": "downloadArtifact",
                "summary": "Download an artifact's bytes",
                "description": (
                    "ETag/Last-Modified; If-None-Match → 304; one Range → 206 (416 when "
                    "unsatisfiable; several ranges: the whole body). s3 storage answers 302 to "
                    "a presigned GET unless S3_PRESIGN_DOWNLOADS=false. 404 external_object for "
                    "a reference (a key outside the run's prefix)."
                ),
                **download,
            },
            "head": {
                "operationId": "headArtifact",
                "summary": "An artifact's size and validators",
                "description": "As GET, without the body.",
                **download,
            },
        },
    }
