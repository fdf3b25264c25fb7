"""Object-key rules (API.md § storageKey): pure functions, no I/O."""

from __future__ import annotations

import re
import uuid

MAX_KEY_BYTES = 1024
# One segment of a key becomes a file name on the local backend: most file systems allow 255
# bytes. S3 would take longer ones, but a key must be servable by either backend (issue 6 #7).
MAX_SEGMENT_BYTES = 255
MAX_FILE_NAME = 200
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def run_prefix(run_id: uuid.UUID) -> str:
    """The prefix of the objects a run owns (deleted with the run)."""
    return f"runs/{run_id}/"


def _is_runs(segment: str) -> bool:
    # "runs" in any letter case: a case-insensitive file system (or a careless reader) must
    # not find another run's objects under RUNS/<id>/.
    return segment.lower() == "runs"


def own_prefix(key: str, run_id: uuid.UUID) -> str | None:
    """The run's ``runs/<id>/`` prefix as ``key`` spells it, if ``key`` is under it; else None.

    key_problem accepts ``runs`` and the id in any letter case (UUIDs are case-insensitive), but
    S3 keys and most file systems are not: ``RUNS/<ID>/`` is a prefix of its own that a delete
    must visit.
    """
    segments = key.split("/", 2)
    if len(segments) == 3 and _is_runs(segments[0]) and segments[1].lower() == str(run_id):
        if segments[2] != "":
            return f"{segments[0]}/{segments[1]}/"
    return None


def is_owned(key: str, run_id: uuid.UUID) -> bool:
    """True when the service may write, read and delete ``key`` on behalf of ``run_id``.

    Only objects under the run's own ``runs/<runId>/`` prefix are ever written or streamed by
    the service (issue 6 #1); any other registered key is a reference, listed but never read.
    """
    return own_prefix(key, run_id) is not None


def key_problem(key: str, run_id: uuid.UUID) -> str | None:
    """Why ``key`` is not an acceptable storageKey for ``run_id``'s runner, or None.

    Relative, no leading ``/``, no backslash, no control characters, no empty, ``.`` or ``..``
    segment, at most 1024 bytes and 255 per segment, not under another run's ``runs/<id>/``
    prefix (``runs`` in any letter case), and not ``runs`` or ``runs/<id>`` alone.
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
        if len(segment.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_BYTES:
            return f"must not have a segment longer than {MAX_SEGMENT_BYTES} bytes"
    if _is_runs(segments[0]):
        if len(segments) > 1 and segments[1].lower() != str(run_id):
            return "must not be under another run's prefix (runs/<runId>/)"
        if len(segments) < 3:
            return "must name an object under runs/<runId>/, not the prefix itself"
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
