"""The error family: status + machine code + message, raised anywhere, rendered by api/errors.py."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    status = 500
    code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"ok": False, "error": self.message, "code": self.code, **self.extra}


class InvalidRequestError(ApiError):
    status = 400
    code = "invalid_request"


class UnauthorizedError(ApiError):
    status = 401
    code = "unauthorized"

    def __init__(self, message: str = "missing or invalid credentials", **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(message, **kwargs)


class ForbiddenError(ApiError):
    status = 403
    code = "forbidden"


class NotFoundError(ApiError):
    status = 404
    code = "not_found"


class RunNotFoundError(NotFoundError):
    def __init__(self, message: str = "run not found", **kwargs: Any) -> None:
        super().__init__(message, code="run_not_found", **kwargs)


class ConflictError(ApiError):
    status = 409
    code = "conflict"


class RunFinishedError(ConflictError):
    """409 on a terminal run; carries the run's status so the runner knows it must stop."""

    code = "run_finished"

    def __init__(self, run_status: str) -> None:
        super().__init__(f"run is already {run_status}", runStatus=run_status)


class UnprocessableError(ApiError):
    status = 422
    code = "unprocessable"


class PayloadTooLargeError(ApiError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaTypeError(ApiError):
    status = 415
    code = "unsupported_media_type"


class RateLimitedError(ApiError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, retry_after))})


class DatabaseUnavailableError(ApiError):
    status = 503
    code = "database_unavailable"


class StorageUnavailableError(ApiError):
    """503: the object store is down or failing; nothing half-written was left behind."""

    status = 503
    code = "storage_unavailable"
