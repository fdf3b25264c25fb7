"""Run-scoped runner tokens (API.md § Runner API).

HS256 JWTs signed with RUNNER_AUTH_SECRET, claims ``sub`` (run id), ``scope: "runner"``,
``iat``, ``exp``. Verification pins the algorithm list to HS256, so neither ``alg: none`` nor an
RS/HS key-confusion token is accepted. The raw secret itself is also accepted as a legacy bearer,
compared in constant time.
"""

from __future__ import annotations

import functools
import hmac
import time
import uuid
from datetime import UTC, datetime

import jwt

ALGORITHM = "HS256"
SCOPE = "runner"


def mint(secret: str, run_id: uuid.UUID, ttl_seconds: int) -> tuple[str, datetime]:
    """Return a runner token for ``run_id`` and its expiry time (aware UTC)."""
    now = int(time.time())
    exp = now + ttl_seconds
    token = jwt.encode(
        {"sub": str(run_id), "scope": SCOPE, "iat": now, "exp": exp}, secret, algorithm=ALGORITHM
    )
    return token, datetime.fromtimestamp(exp, UTC)


def verify(secret: str, token: str, run_id: uuid.UUID) -> bool:
    """True when ``token`` may act on ``run_id``: the legacy secret, or a valid token for it.

    Never raises: an expired, tampered, malformed or foreign-run token is simply not valid.
    """
    if hmac.compare_digest(token.encode("utf-8"), secret.encode("utf-8")):
        return True
    checked = _checked_claims(secret, token)
    if checked is None:
        return False
    subject, expires = checked
    return expires > time.time() and subject == run_id


# A runner sends many requests with one token: verifying its signature once per worker is
# enough. Only the outcome of the signature and claim checks is cached; expiry is re-checked
# on every use.
@functools.lru_cache(maxsize=4096)
def _checked_claims(secret: str, token: str) -> tuple[uuid.UUID, float] | None:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["sub", "exp"]},
        )
    except jwt.PyJWTError:
        return None
    subject = claims.get("sub")
    if claims.get("scope") != SCOPE or not isinstance(subject, str):
        return None
    try:
        return uuid.UUID(subject), float(claims["exp"])
    except (ValueError, TypeError):
        return None
