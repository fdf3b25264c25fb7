"""Artifacts: registrations, multipart uploads, direct upload URLs and downloads.

API.md § POST /api/runner/runs/:runId/artifacts and § Artifacts at any size. The service only
ever writes, reads or deletes objects under the run's own ``runs/<runId>/`` prefix
(storage/keys.is_owned); any other registered key is a reference, listed but never read.
Uploads happen outside any database transaction (they may take minutes and must not hold
SQLite's write lock); an object whose registration fails is removed again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, BinaryIO

from flask import current_app
from sqlalchemy import select

from designrun.auth import upload_tokens
from designrun.database import write_transaction
from designrun.errors import (
    ApiError,
    ForbiddenError,
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    RunNotFoundError,
)
from designrun.extensions import db
from designrun.models import Artifact, Run
from designrun.models.types import utcnow, uuid7
from designrun.storage import get_storage
from designrun.storage.base import ObjectInfo, StorageKeyError
from designrun.storage.keys import default_key, is_owned, key_problem


@dataclass(frozen=True)
class ArtifactInfo:
    artifact_type: str
    content_type: str | None = None
    size_bytes: int | None = None
    metadata: dict[str, Any] | None = None
    storage_key: str | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True)
class DirectUpload:
    """Where and how a runner PUTs the bytes of a direct upload."""

    url: str
    headers: dict[str, str]
    storage_key: str
    expires_at: datetime


def _check_key(key: str, run_id: uuid.UUID) -> None:
    problem = key_problem(key, run_id)
    if problem is not None:
        raise InvalidRequestError(f"storageKey: {problem}")


def _run_status(run_id: uuid.UUID) -> str:
    status = db.session.scalar(select(Run.status).where(Run.id == run_id))
    if status is None:
        raise RunNotFoundError()
    return status


def _max_bytes() -> int:
    return int(current_app.config["MAX_UPLOAD_BYTES"])


def _artifact_by_key(run_id: uuid.UUID, key: str | None) -> Artifact | None:
    if key is None:
        return None
    return db.session.scalar(
        select(Artifact).where(Artifact.run_id == run_id, Artifact.idempotency_key == key)
    )


def _stored_size(run_id: uuid.UUID, key: str, claimed: int | None) -> int | None:
    """The size to record for a JSON registration: the store's, for the run's own objects.

    API.md: when the object exists, its size comes from the store (a different claim is
    ``400 size_mismatch``). A missing object under the run's prefix records ``null`` (the store
    is the authority; a claim it cannot back is not kept). References (keys elsewhere) are
    never looked up: their claimed size is kept as given.
    """
    if not is_owned(key, run_id):
        return claimed
    info = get_storage().stat(key)
    if info is None:
        return None
    if claimed is not None and claimed != info.size:
        raise InvalidRequestError(
            f"sizeBytes: {claimed} does not match the stored object's {info.size} bytes",
            code="size_mismatch",
        )
    if info.size > _max_bytes():
        get_storage().delete(key)  # a presigned PUT without a size could not be bounded
        raise PayloadTooLargeError("the uploaded object is larger than MAX_UPLOAD_BYTES")
    return info.size


def register_artifact(run_id: uuid.UUID, info: ArtifactInfo) -> tuple[Artifact, str]:
    """Register an object a runner uploaded elsewhere; return the artifact and the run status.

    Raises InvalidRequestError for an unacceptable storageKey or a size the store contradicts,
    PayloadTooLargeError, RunNotFoundError, StorageUnavailable.
    """
    if info.storage_key is None:
        raise InvalidRequestError("storageKey: field required")
    _check_key(info.storage_key, run_id)
    _run_status(run_id)
    known = _artifact_by_key(run_id, info.idempotency_key)
    if known is not None:
        return known, _run_status(run_id)  # a retry: the original answer, nothing stored again
    size = _stored_size(run_id, info.storage_key, info.size_bytes)
    with write_transaction() as session:
        status = session.scalar(select(Run.status).where(Run.id == run_id).with_for_update())
        if status is None:
            raise RunNotFoundError()
        known = _artifact_by_key(run_id, info.idempotency_key)
        if known is not None:
            return known, status
        artifact = Artifact(
            id=uuid7(),
            run_id=run_id,
            artifact_type=info.artifact_type,
            storage_key=info.storage_key,
            content_type=info.content_type,
            size_bytes=size,
            metadata_=info.metadata or {},
            idempotency_key=info.idempotency_key,
            created_at=utcnow(),
        )
        session.add(artifact)
    return artifact, status


def _save_or_404(
    run_id: uuid.UUID, key: str, stream: BinaryIO, content_type: str | None, limit: int
) -> int:
    """Stream into the store; a failure while the run was being deleted is the run's 404."""
    storage = get_storage()
    try:
        return storage.save_stream(key, stream, content_type, limit=limit)
    except StorageKeyError as exc:
        raise InvalidRequestError(f"storageKey: {exc}") from None
    except Exception:
        # DELETE of the run during the copy removed the folder under it (issue 6 #11).
        if db.session.scalar(select(Run.id).where(Run.id == run_id)) is None:
            raise RunNotFoundError() from None
        raise


def upload_artifact(
    run_id: uuid.UUID, info: ArtifactInfo, stream: BinaryIO, file_name: str | None
) -> tuple[Artifact, str]:
    """Stream a file into object storage, then register it; return the artifact and run status.

    If registering fails afterwards, the object is removed again, so a failed request leaves
    nothing behind. A retry (same idempotencyKey) answers the artifact already registered and
    keeps nothing of its own bytes. Raises InvalidRequestError (also for a key outside the
    run's prefix, or one the backend cannot hold), RunNotFoundError (also when the run is
    deleted during the copy), PayloadTooLargeError, StorageUnavailable.
    """
    known = _artifact_by_key(run_id, info.idempotency_key)
    if known is not None:
        return known, _run_status(run_id)
    artifact_id = uuid7()
    # An explicit empty storageKey is a 400 like any other bad key, not "use the default".
    key = info.storage_key
    if key is None:
        key = default_key(run_id, artifact_id, file_name)
    _check_key(key, run_id)
    if not is_owned(key, run_id):
        # Keys elsewhere are references: writing one would overwrite another run's object.
        raise InvalidRequestError(
            f"storageKey: an upload is stored under the run's own prefix runs/{run_id}/ "
            "(a key elsewhere can only be registered with the JSON form, as a reference)"
        )
    _run_status(run_id)  # 404 before spending time on the upload
    size = _save_or_404(run_id, key, stream, info.content_type, _max_bytes())
    content_type = info.content_type or "application/octet-stream"
    return _record_upload(run_id, artifact_id, key, size, content_type, info)


def _record_upload(
    run_id: uuid.UUID,
    artifact_id: uuid.UUID,
    key: str,
    size: int,
    content_type: str | None,
    info: ArtifactInfo,
) -> tuple[Artifact, str]:
    storage = get_storage()
    try:
        with write_transaction() as session:
            status = session.scalar(select(Run.status).where(Run.id == run_id).with_for_update())
            if status is None:
                raise RunNotFoundError()
            # A retry that raced the original upload: the original wins.
            known = _artifact_by_key(run_id, info.idempotency_key)
            if known is None:
                artifact = Artifact(
                    id=artifact_id,
                    run_id=run_id,
                    artifact_type=info.artifact_type,
                    storage_key=key,
                    content_type=content_type,
                    size_bytes=size,
                    metadata_=info.metadata or {},
                    idempotency_key=info.idempotency_key,
                    created_at=utcnow(),
                )
                session.add(artifact)
    except BaseException:
        storage.delete(key)
        raise
    if known is not None:
        if known.storage_key != key:
            storage.delete(key)
        return known, status
    return artifact, status


# --- direct uploads ------------------------------------------------------------------------------


def create_upload(
    run_id: uuid.UUID,
    file_name: str,
    content_type: str | None,
    size_bytes: int | None,
    origin: str,
) -> tuple[DirectUpload, str]:
    """An upload URL for one new key under the run's prefix; return it and the run status.

    s3: a presigned PUT to the bucket (Content-Type and Content-Length signed when given).
    local: ``PUT <origin>/api/uploads/<token>``, a token bound to the key and the byte limit.
    Raises RunNotFoundError, PayloadTooLargeError (a declared size over MAX_UPLOAD_BYTES).
    """
    status = _run_status(run_id)
    if size_bytes is not None and size_bytes > _max_bytes():
        raise PayloadTooLargeError("sizeBytes: larger than MAX_UPLOAD_BYTES")
    key = default_key(run_id, uuid7(), file_name)
    ttl = int(current_app.config["UPLOAD_URL_TTL"])
    expires_at = utcnow() + timedelta(seconds=ttl)
    presigned = get_storage().presign_put(key, content_type, size_bytes, ttl)
    if presigned is not None:
        url, headers = presigned
    else:
        grant = upload_tokens.UploadGrant(
            run_id=run_id,
            key=key,
            limit=_max_bytes() if size_bytes is None else size_bytes,
            exact_size=size_bytes,
            content_type=content_type,
        )
        token = upload_tokens.mint(current_app.config["SECRET_KEY"], grant)
        url = f"{origin.rstrip('/')}/api/uploads/{token}"
        headers = {"Content-Type": content_type} if content_type else {}
    return DirectUpload(url=url, headers=headers, storage_key=key, expires_at=expires_at), status


def receive_upload(
    token: str, stream: BinaryIO, content_type: str | None, content_length: int | None
) -> tuple[str, int]:
    """Store the body of ``PUT /api/uploads/<token>`` at the token's key; (key, size).

    Raises ForbiddenError (403) for a tampered, expired or foreign token or a Content-Type other
    than the one it was issued for; PayloadTooLargeError (nothing stored) past its limit;
    InvalidRequestError (``size_mismatch``) when a declared size was not what arrived;
    RunNotFoundError when the run is gone (also when deleted during the copy).
    """
    try:
        grant = upload_tokens.verify(
            current_app.config["SECRET_KEY"], token, int(current_app.config["UPLOAD_URL_TTL"])
        )
    except upload_tokens.UploadTokenError as exc:
        raise ForbiddenError(str(exc), code="upload_url_invalid") from None
    if not is_owned(grant.key, grant.run_id) or key_problem(grant.key, grant.run_id):
        raise ForbiddenError("the upload URL is not valid", code="upload_url_invalid")
    if grant.content_type is not None and content_type != grant.content_type:
        raise ForbiddenError(
            f"Content-Type must be {grant.content_type!r}, as the upload URL was issued for",
            code="upload_url_mismatch",
        )
    if content_length is not None and content_length > grant.limit:
        raise PayloadTooLargeError(f"the body is larger than this upload URL's {grant.limit} bytes")
    _run_status(grant.run_id)
    size = _save_or_404(grant.run_id, grant.key, stream, content_type, grant.limit)
    storage = get_storage()
    if grant.exact_size is not None and size != grant.exact_size:
        storage.delete(grant.key)
        raise InvalidRequestError(
            f"body: {size} bytes arrived, the upload URL was issued for {grant.exact_size}",
            code="size_mismatch",
        )
    if db.session.scalar(select(Run.id).where(Run.id == grant.run_id)) is None:
        storage.delete(grant.key)  # the run was deleted during the copy
        raise RunNotFoundError()
    return grant.key, size


# --- downloads -----------------------------------------------------------------------------------


def artifact_object(artifact: Artifact) -> ObjectInfo:
    """The stored object behind one of the caller's artifacts (looked up with get_artifact).

    Raises NotFoundError: ``external_object`` for a reference (a key outside the run's
    prefix: never read through designrun), ``object_not_found`` when nothing is stored;
    StorageUnavailable.
    """
    if not is_owned(artifact.storage_key, artifact.run_id):
        # Otherwise one run's token could register (and its user read) any object in the store.
        raise NotFoundError(
            "the artifact is a reference to an object outside the run's storage",
            code="external_object",
        )
    try:
        info = get_storage().stat(artifact.storage_key)
    except StorageKeyError:
        info = None
    if info is None:
        raise ApiError(
            "the artifact's object is not in this server's storage",
            status=404,
            code="object_not_found",
        )
    return info
