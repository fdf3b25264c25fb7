"""Password hashing: Werkzeug's salted scrypt (memory-hard), verified in constant time."""

from __future__ import annotations

from werkzeug.security import check_password_hash, generate_password_hash

METHOD = "scrypt"
# Verified against when the e-mail is unknown, so that an unknown e-mail costs the same time
# as a wrong password (no account enumeration by timing).
_DUMMY_HASH = generate_password_hash("designrun-dummy-password", method=METHOD)


def hash_password(password: str) -> str:
    """Return a salted scrypt hash of ``password``."""
    return generate_password_hash(password, method=METHOD)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Check ``password``; with no hash, spend the same time and return False."""
    if password_hash is None:
        check_password_hash(_DUMMY_HASH, password)
        return False
    return check_password_hash(password_hash, password)
