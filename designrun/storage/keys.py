"""Object-key rules (API.md § storageKey): pure functions, no I/O."""

from __future__ import annotations

import re
import uuid

MAX_KEY_BYTES = 1024
MAX_FILE_NAME = 200
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def run_prefix(run_id: uuid.UUID) -> str:
    """The prefix of the objects a run owns (deleted with the run)."""
    return f"runs/{run_id}/"


def own_prefix(key: str, run_id: uuid.UUID) -> str | None:
    """The run's ``runs/<id>/`` prefix as ``key`` spells it, if ``key`` is under it; else None.

    key_problem accepts the id in any letter case (UUIDs are case-insensitive), but S3 keys and
    most file systems are not: ``runs/<ID>/`` is a prefix of its own that a delete must visit.
    """
    segments = key.split("/", 2)
    if len(segments) == 3 and segments[0] == "runs" and segments[1].lower() == str(run_id):
        return f"runs/{segments[1]}/"
    return None


def key_problem(key: str, run_id: uuid.UUID) -> str | None:
    """Why ``key`` is not an acceptable storageKey for ``run_id``'s runner, or None.

    Relative, no leading ``/``, no backslash, no control characters, no empty, ``.`` or ``..``
    segment, at most 1024 bytes, and not under another run's ``runs/<id>/`` prefix.
    """
    if key == "":
        return "must not be empty"
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        return f"must be at most {MAX_KEY_BYTES} bytes"
    if key.startswith("/"):
        return "must be a relative key (no leading '/')"
    if "\\" in key:
        return "must not contain a backslash"
    if _CONTROL.search(key):
        return "must not contain control characters"
    segments = key.split("/")
    for segment in segments:
        if segment == "":
            return "must not contain an empty segment ('//' or a trailing '/')"
        if segment in {".", ".."}:
            return "must not contain a '.' or '..' segment"
    if segments[0] == "runs" and len(segments) > 1:
        owner = segments[1]
        if owner.lower() != str(run_id):
            return "must not be under another run's prefix (runs/<runId>/)"
    return None


def safe_file_name(name: str | None) -> str:
    """A file name for the default key: ``[A-Za-z0-9._-]`` only, 1..200 chars, never . or .."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _UNSAFE.sub("_", base)[:MAX_FILE_NAME]
    if cleaned in {"", ".", ".."}:
        cleaned = "file"
    return cleaned


def default_key(run_id: uuid.UUID, artifact_id: uuid.UUID, file_name: str | None) -> str:
    """``runs/<runId>/<artifactId>/<safe file name>``."""
    return f"{run_prefix(run_id)}{artifact_id}/{safe_file_name(file_name)}"
