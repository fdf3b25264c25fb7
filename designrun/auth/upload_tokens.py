"""Signed, expiring upload URLs of the local backend (API.md § Artifacts at any size).

The token in ``PUT /api/uploads/<token>`` is the whole credential (no bearer): an itsdangerous
signature, with SECRET_KEY and a salt of its own (so no other signed value of the app is ever
accepted as one), over the run, the one key it may write, the byte limit and the content type.
Its timestamp makes it expire after UPLOAD_URL_TTL seconds.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

_SALT = "designrun.upload-url.v1"


class UploadTokenError(Exception):
    """The token is tampered, malformed or expired (the message says which)."""


@dataclass(frozen=True)
class UploadGrant:
    run_id: uuid.UUID
    key: str
    limit: int  # at most this many bytes
    exact_size: int | None  # the size the runner announced, when it did
    content_type: str | None


def _serializer(secret: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=_SALT)


def mint(secret: str, grant: UploadGrant) -> str:
    """A URL-safe token carrying ``grant``, signed with ``secret``."""
    payload: dict[str, Any] = {
        "r": str(grant.run_id),
        "k": grant.key,
        "n": grant.limit,
        "s": grant.exact_size,
        "t": grant.content_type,
    }
    return str(_serializer(secret).dumps(payload))


def verify(secret: str, token: str, max_age: int) -> UploadGrant:
    """The grant in ``token``; raises UploadTokenError when it is not one we signed, or old."""
    try:
        payload = _serializer(secret).loads(token, max_age=max_age)
    except SignatureExpired:
        raise UploadTokenError("the upload URL has expired") from None
    except BadSignature:
        raise UploadTokenError("the upload URL is not valid") from None
    try:
        return UploadGrant(
            run_id=uuid.UUID(payload["r"]),
            key=str(payload["k"]),
            limit=int(payload["n"]),
            exact_size=None if payload["s"] is None else int(payload["s"]),
            content_type=payload["t"],
        )
    except (KeyError, TypeError, ValueError):
        raise UploadTokenError("the upload URL is not valid") from None
