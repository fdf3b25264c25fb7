"""Run-scoped runner tokens (API.md § Runner API).

HS256 JWTs signed with RUNNER_AUTH_SECRET, claims ``sub`` (run id), ``scope: "runner"``,
``iat``, ``exp``; extra claims (``aud`` included) are allowed. Verification pins the algorithm
list to HS256, so neither ``alg: none`` nor an RS/HS key-confusion token is accepted. The raw
secret itself is also accepted as a legacy bearer, compared in constant time.
"""

from __future__ import annotations

import functools
import hmac
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt

ALGORITHM = "HS256"
SCOPE = "runner"
# Clock skew tolerated between the host that minted a token and this one (nbf/iat only).
LEEWAY_SECONDS = 30


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

    The signature and the claims' shape are checked once per worker (cached); the time claims
    (``exp``, and ``nbf``/``iat`` when present) on every use. ``nbf``/``iat`` get LEEWAY_SECONDS
    for clock skew between the minting host and this one; ``exp`` gets none (a token lives
    RUNNER_TOKEN_TTL, and "expired is 401" stays exact). Never raises: an expired, not-yet-valid,
    tampered, malformed or foreign-run token is simply not valid.
    """
    if hmac.compare_digest(token.encode("utf-8"), secret.encode("utf-8")):
        return True
    checked = _checked_signature(secret, token)
    if checked is None or checked.subject != run_id:
        return False
    now = time.time()
    if checked.expires <= now:
        return False
    return checked.not_before is None or checked.not_before - LEEWAY_SECONDS <= now


@dataclass(frozen=True)
class _Checked:
    subject: uuid.UUID
    expires: float
    not_before: float | None  # the later of nbf and iat: a token is not valid before either


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


# A runner sends many requests with one token: verifying its signature once per worker is
# enough. Only what cannot change with time is cached (the signature, the claims' shape);
# a rejected token that would become valid later is never cached as rejected.
@functools.lru_cache(maxsize=4096)
def _checked_signature(secret: str, token: str) -> _Checked | None:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            # Time claims are checked on every use by verify(); extra claims (``aud``, ``iss``)
            # are allowed by API.md, so PyJWT must not refuse an ``aud`` it was not told about.
            options={
                "require": ["sub", "exp"],
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
                "verify_iss": False,
            },
        )
    except jwt.PyJWTError:
        return None
    subject = claims.get("sub")
    if claims.get("scope") != SCOPE or not isinstance(subject, str):
        return None
    expires = _number(claims["exp"])
    starts = [_number(claims[name]) for name in ("nbf", "iat") if name in claims]
    if expires is None or None in starts:
        return None
    try:
        run_id = uuid.UUID(subject)
    except ValueError:
        return None
    return _Checked(run_id, expires, max((s for s in starts if s is not None), default=None))
