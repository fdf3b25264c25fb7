"""``PUT /api/uploads/<token>``: the local backend's direct upload URL (API.md § Artifacts at
any size).

No bearer: the signed, expiring token in the path is the credential (auth/upload_tokens.py),
valid for one key and a byte limit; a bad one is ``403``. The body is streamed to a temporary
file, fsynced and renamed into place (storage/local.py): never held in memory.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from designrun.api.body import upload_stream
from designrun.services import artifacts

uploads_api = Blueprint("uploads_api", __name__, url_prefix="/api/uploads")


@uploads_api.put("/<token>")
def put_upload(token: str) -> dict[str, Any]:
    """Store the body at the key the token names; answer its key and size."""
    key, size = artifacts.receive_upload(
        token,
        upload_stream(),
        request.headers.get("Content-Type"),
        request.content_length,
    )
    return {"ok": True, "storageKey": key, "sizeBytes": size}
