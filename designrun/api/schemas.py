"""Request and response models: they validate every body and query, and feed openapi.py.

Field names are snake_case in Python and camelCase on the wire (aliases). Request models are
strict (no "1" for 1, no true for 1) and ignore unknown fields (forward compatibility with newer
runners and front ends). Limits are API.md's "Details pinned".
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

MAX_JSON_OBJECT_BYTES = 64 * 1024
MAX_SAFE_INTEGER = 2**53 - 1
MAX_SEQUENCE = 2**63 - 1

RunnerStatus = Literal["running", "completed", "failed", "cancelled"]
RunStatusName = Literal["queued", "running", "completed", "failed", "cancelled"]
FailureReasonName = Literal[
    "agent_error",
    "runner_lost",
    "start_timeout",
    "dispatch_failed",
    "runner_exited",
    "cancelled_by_user",
]


def _json_size_limit(value: dict[str, Any]) -> dict[str, Any]:
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError:
        raise ValueError("numbers must be finite (no NaN or infinity)") from None
    size = len(text.encode("utf-8"))
    if size > MAX_JSON_OBJECT_BYTES:
        raise ValueError(f"must be at most {MAX_JSON_OBJECT_BYTES} bytes as JSON (got {size})")
    return value


def _integral_float_to_int(value: Any) -> Any:
    """JSON has one number type: ``2048.0`` is the integer 2048 (as JSON Schema says)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _header_safe(value: str) -> str:
    """A content type is sent back as a header (download, S3): printable ASCII only."""
    if any(not " " <= char <= "~" for char in value):
        raise ValueError("must be printable ASCII (no CR, LF or other control characters)")
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(_json_size_limit)]
ContentType = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_header_safe)]
Progress = Annotated[float, Field(allow_inf_nan=False)]
SizeBytes = Annotated[
    int, Field(ge=0, le=MAX_SAFE_INTEGER), BeforeValidator(_integral_float_to_int)
]


class RequestModel(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", populate_by_name=False)


class QueryModel(BaseModel):
    """Query strings are text: numbers are parsed from it (lax), unknown params ignored."""

    model_config = ConfigDict(strict=False, extra="ignore")


# --- Runner API -------------------------------------------------------------------------------


class StatusUpdate(RequestModel):
    # The document says what _status_or_progress checks (a JSON Schema can, a field cannot).
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["status"], "properties": {"status": {"type": "string"}}},
                {"required": ["progress"], "properties": {"progress": {"type": "number"}}},
            ]
        }
    )

    status: RunnerStatus | None = None
    progress: Progress | None = None
    error: Annotated[str, Field(max_length=10_000)] | None = None
    # API.md Part 2 § Log completeness: the events the runner sent (kept with a final status).
    event_count: Annotated[int | None, Field(alias="eventCount", ge=0, le=MAX_SAFE_INTEGER)] = None

    @model_validator(mode="after")
    def _status_or_progress(self) -> StatusUpdate:
        if self.status is None and self.progress is None:
            raise ValueError("at least one of status and progress is required")
        return self


class EventIn(RequestModel):
    event_type: Annotated[str, Field(alias="eventType", min_length=1, max_length=100)]
    message: Annotated[str, Field(max_length=65_536)] | None = None
    metadata: JsonObject | None = None
    idempotency_key: Annotated[
        str | None, Field(alias="idempotencyKey", min_length=1, max_length=200)
    ] = None


class EventBatch(RequestModel):
    events: Annotated[list[EventIn], Field(min_length=1, max_length=1000)]


class ArtifactFields(RequestModel):
    artifact_type: Annotated[str, Field(alias="artifactType", min_length=1, max_length=100)]
    content_type: Annotated[ContentType | None, Field(alias="contentType")] = None
    size_bytes: Annotated[SizeBytes | None, Field(alias="sizeBytes")] = None
    metadata: JsonObject | None = None
    # Checked against the object-key rules by storage/keys.py (one place for those rules).
    storage_key: Annotated[str | None, Field(alias="storageKey")] = None
    # Not in API.md: a retried registration/upload with the same key is not stored twice.
    idempotency_key: Annotated[
        str | None, Field(alias="idempotencyKey", min_length=1, max_length=200)
    ] = None


class ArtifactRegistration(ArtifactFields):
    """JSON registration of an object uploaded elsewhere: the key is required."""

    storage_key: Annotated[str, Field(alias="storageKey", json_schema_extra={"minLength": 1})]


class DirectUploadRequest(RequestModel):
    """POST …/artifacts/uploads: the bytes go to the returned URL, not to this endpoint."""

    file_name: Annotated[str, Field(alias="fileName", min_length=1, max_length=255)]
    content_type: Annotated[ContentType | None, Field(alias="contentType")] = None
    size_bytes: Annotated[SizeBytes | None, Field(alias="sizeBytes")] = None


# --- Users ------------------------------------------------------------------------------------


class SignUp(RequestModel):
    email: Annotated[str, Field(max_length=1000)]
    # At least 8 characters: checked by services/accounts.py (400 password_too_short).
    password: Annotated[str, Field(max_length=1024, json_schema_extra={"minLength": 8})]
    name: Annotated[str, Field(max_length=200)] | None = None


class SignIn(RequestModel):
    email: Annotated[str, Field(max_length=1000)]
    password: Annotated[str, Field(max_length=1024)]


class CreateRun(RequestModel):
    prompt: Annotated[str, Field(min_length=1, max_length=20_000)]
    config: JsonObject | None = None


class CancelRun(RequestModel):
    reason: Annotated[str, Field(min_length=1, max_length=1000)] | None = None


class ListRunsQuery(QueryModel):
    limit: Annotated[int, Field(ge=1, le=100)] = 20
    cursor: Annotated[str, Field(max_length=200)] | None = None
    status: RunStatusName | None = None


class ListEventsQuery(QueryModel):
    after: Annotated[int, Field(ge=0, le=MAX_SEQUENCE)] | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 100


# --- Responses (documentation and contract tests; serializers.py builds the dicts) -------------


class ResponseModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DispatchOut(ResponseModel):
    backend: Literal["local", "jobs", "daytona"] | None
    state: Literal["pending", "sent", "failed", "none"]
    attempts: int
    lastError: str | None


class TransitionOut(ResponseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    from_: RunStatusName = Field(alias="from")
    to: RunStatusName
    at: datetime
    by: Literal["runner", "user", "system"]
    reason: FailureReasonName | None


class ErrorOut(ResponseModel):
    model_config = ConfigDict(extra="allow")
    ok: Literal[False]
    error: str
    code: str


class RunOut(ResponseModel):
    id: str
    accountId: str
    prompt: str
    config: dict[str, Any]
    status: RunStatusName
    progress: float
    error: str | None
    createdAt: datetime
    updatedAt: datetime
    startedAt: datetime | None
    completedAt: datetime | None
    failureReason: FailureReasonName | None
    lastHeartbeatAt: datetime | None
    retryOf: str | None
    dispatch: DispatchOut
    eventCount: int
    logComplete: bool | None
    transitions: list[TransitionOut] | None = None


class EventOut(ResponseModel):
    id: str
    runId: str
    sequence: int
    eventType: str
    message: str | None
    metadata: dict[str, Any]
    createdAt: datetime


class ArtifactOut(ResponseModel):
    id: str
    runId: str
    artifactType: str
    storageKey: str
    contentType: str | None
    sizeBytes: int | None
    metadata: dict[str, Any]
    createdAt: datetime
    downloadUrl: str | None


class StatusOut(ResponseModel):
    ok: Literal[True]
    runStatus: RunStatusName
    progress: float


class EventStoredOut(ResponseModel):
    ok: Literal[True]
    runStatus: RunStatusName
    eventId: str | None = None
    eventIds: list[str] | None = None


class ArtifactStoredOut(ResponseModel):
    ok: Literal[True]
    runStatus: RunStatusName
    artifactId: str
    storageKey: str
    sizeBytes: int | None


class DirectUploadOut(ResponseModel):
    ok: Literal[True]
    runStatus: RunStatusName
    uploadUrl: str
    method: Literal["PUT"]
    headers: dict[str, str]
    storageKey: str
    expiresAt: datetime


class UploadReceivedOut(ResponseModel):
    ok: Literal[True]
    storageKey: str
    sizeBytes: int


class TokenOut(ResponseModel):
    ok: Literal[True]
    runStatus: RunStatusName
    runnerToken: str
    expiresAt: datetime


class RunEnvelope(ResponseModel):
    ok: Literal[True]
    run: RunOut


class RunListOut(ResponseModel):
    ok: Literal[True]
    runs: list[RunOut]
    nextCursor: str | None


class EventListOut(ResponseModel):
    ok: Literal[True]
    events: list[EventOut]
    nextCursor: int | None


class ArtifactListOut(ResponseModel):
    ok: Literal[True]
    artifacts: list[ArtifactOut]


class OkOut(ResponseModel):
    ok: Literal[True]


class UserOut(ResponseModel):
    id: str
    email: str
    name: str
    emailVerified: bool
    image: str | None
    accountId: str
    createdAt: datetime
    updatedAt: datetime


class SessionOut(ResponseModel):
    id: str
    userId: str
    expiresAt: datetime
    createdAt: datetime
    updatedAt: datetime
    ipAddress: str | None
    userAgent: str | None


class AuthOut(ResponseModel):
    token: str
    user: UserOut


class SignOutOut(ResponseModel):
    success: Literal[True]


class GetSessionOut(ResponseModel):
    session: SessionOut
    user: UserOut
